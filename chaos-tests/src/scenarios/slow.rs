//! `slow-primary`: 60 ms added to every chunk both ways on the primary's
//! links. Zero failed requests; the added latency must show.

use super::{Finished, Running, Scenario, Settings, Setup, Times};
use crate::fault::Fault;
use async_trait::async_trait;
use std::time::Duration;

const DELAY: Duration = Duration::from_millis(60);

pub struct Slow;

#[async_trait]
impl Scenario for Slow {
    fn name(&self) -> &'static str {
        "slow-primary"
    }

    fn summary(&self) -> &'static str {
        "60 ms added to every chunk both ways on the primary's links"
    }

    async fn set_up(&mut self, _s: &Settings) -> anyhow::Result<Setup> {
        Ok(Setup {
            proxied: true,
            ..Setup::default()
        })
    }

    async fn fault(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<()> {
        run.app.nodes[0].set_link(Fault::Delay(DELAY));
        tokio::time::sleep(s.hold()).await;
        Ok(())
    }

    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        run.app.nodes[0].set_link(Fault::Pass);
        Ok(run.now())
    }

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, _t: Times) {
        f.zero_failed();
        let max = f.r.max_ms;
        f.r.bound(
            max >= (2 * DELAY).as_millis() as f64,
            format!("slowest request {max} ms: the added latency never showed"),
        );
        let moved = f.seen.iter().any(|x| x.primary.as_deref() != Some("a"));
        f.r.notes.push(format!(
            "the slow primary {} (a check's round trip stays under the 250 ms timeout)",
            if moved {
                "lost its role"
            } else {
                "kept its role"
            }
        ));
    }
}
