//! `crash-primary`, `crash-standby`: kill -9 of a node's app and agent,
//! the node restarted after the hold. Zero failed requests.

use super::{Finished, Running, Scenario, Settings, Times};
use async_trait::async_trait;
use std::time::Duration;

pub struct Crash {
    /// 0: the primary (a), 1: the standby (b).
    node: usize,
}

impl Crash {
    pub fn primary() -> Crash {
        Crash { node: 0 }
    }
    pub fn standby() -> Crash {
        Crash { node: 1 }
    }
}

#[async_trait]
impl Scenario for Crash {
    fn name(&self) -> &'static str {
        ["crash-primary", "crash-standby"][self.node]
    }

    fn summary(&self) -> &'static str {
        [
            "kill -9 of the primary's app and agent, node restarted after the hold",
            "kill -9 of the standby's app and agent, node restarted after the hold",
        ][self.node]
    }

    async fn fault(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<()> {
        run.app.nodes[self.node].crash();
        tokio::time::sleep(s.hold()).await;
        Ok(())
    }

    async fn heal(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<Duration> {
        run.app.nodes[self.node].start_agent(&s.bin_dir)?;
        Ok(run.now())
    }

    async fn recover(&mut self, run: &Running, s: &Settings) {
        run.wait_up(self.node, Duration::from_secs(30)).await;
        tokio::time::sleep(s.cooldown()).await;
    }

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, t: Times) {
        f.node_fault(self.node, t);
        f.zero_failed();
        f.r.bound(
            f.r.detection_ms.is_some(),
            "the gateway never saw the node down",
        );
        f.r.bound(f.r.recovery_ms.is_some(), "the node never came back up");
    }
}
