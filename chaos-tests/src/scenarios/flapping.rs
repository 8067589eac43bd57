//! `flapping`: the primary's readiness fails and passes every 700 ms.
//! Zero failed requests; the gateway must see the node go down.

use super::{Finished, Running, Scenario, Settings, Times};
use async_trait::async_trait;
use std::time::{Duration, Instant};

pub struct Flapping;

#[async_trait]
impl Scenario for Flapping {
    fn name(&self) -> &'static str {
        "flapping"
    }

    fn summary(&self) -> &'static str {
        "the primary's readiness fails and passes every 700 ms"
    }

    async fn fault(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<()> {
        let marker = &run.app.nodes[0].flap_marker;
        let end = Instant::now() + s.long_hold();
        let mut down = false;
        while Instant::now() < end {
            down = !down;
            if down {
                std::fs::write(marker, "")?;
            } else {
                let _ = std::fs::remove_file(marker);
            }
            // Longer than the gateway's fall × interval, so that it sees
            // every flap (shorter ones it filters out).
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        Ok(())
    }

    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        let _ = std::fs::remove_file(&run.app.nodes[0].flap_marker);
        Ok(run.now())
    }

    /// Flap damping may keep the node out for a while: wait for it.
    async fn recover(&mut self, run: &Running, s: &Settings) {
        run.wait_up(0, Duration::from_secs(60)).await;
        tokio::time::sleep(s.cooldown()).await;
    }

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, t: Times) {
        f.node_fault(0, t);
        let downs = f
            .seen
            .windows(2)
            .filter(|w| w[0].health[0] == "up" && w[1].health[0] != "up")
            .count();
        f.r.notes
            .push(format!("node a went down {downs} times at the gateway"));
        f.zero_failed();
        f.r.bound(
            f.r.detection_ms.is_some(),
            "the gateway never saw the flapping node down",
        );
    }
}
