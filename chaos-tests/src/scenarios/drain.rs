//! `drain-primary`: `twinctl drain a`, its requests in flight reach 0,
//! `twinctl undrain a` after the hold. Zero failed requests.

use super::{Finished, Running, Scenario, Settings, Times};
use crate::appliance::node_field;
use async_trait::async_trait;
use std::time::Duration;

#[derive(Default)]
pub struct Drain {
    drain: (Option<i32>, String),
    undrain: (Option<i32>, String),
    drained: bool,
}

#[async_trait]
impl Scenario for Drain {
    fn name(&self) -> &'static str {
        "drain-primary"
    }

    fn summary(&self) -> &'static str {
        "twinctl drain of the primary, in flight reaches 0, undrain"
    }

    async fn fault(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<()> {
        self.drain = run.app.twinctl(&["drain", "a"]);
        self.drained = run
            .wait_until(Duration::from_secs(20), |st| {
                st["nodes"][0]["inflight"].as_i64() == Some(0)
                    && node_field(st, "a", "admin") == Some("drain")
            })
            .await;
        tokio::time::sleep(s.hold()).await;
        Ok(())
    }

    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        let at = run.now();
        self.undrain = run.app.twinctl(&["undrain", "a"]);
        Ok(at)
    }

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, t: Times) {
        let (code, out) = &self.drain;
        f.r.bound(*code == Some(0), format!("twinctl drain: {out}"));
        let (code, out) = &self.undrain;
        f.r.bound(*code == Some(0), format!("twinctl undrain: {out}"));
        f.r.bound(self.drained, "node a never reached 0 requests in flight");
        f.r.detection_ms = Finished::ms(f.first(t.at, |x| x.admin[0] == "drain"));
        f.r.recovery_ms = Finished::ms(
            f.first(t.lifted, |x| x.admin[0] == "active")
                .map(|d| d + (t.lifted - t.at)),
        );
        f.zero_failed();
    }
}
