//! `switchover`: `twinctl switchover b`. Zero failed requests; b becomes
//! primary.

use super::{Finished, Running, Scenario, Settings, Times};
use async_trait::async_trait;
use std::time::Duration;

#[derive(Default)]
pub struct Switchover {
    twinctl: (Option<i32>, String),
}

#[async_trait]
impl Scenario for Switchover {
    fn name(&self) -> &'static str {
        "switchover"
    }

    fn summary(&self) -> &'static str {
        "twinctl switchover to the standby"
    }

    async fn fault(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<()> {
        self.twinctl = run.app.twinctl(&["switchover", "b"]);
        tokio::time::sleep(s.hold()).await;
        Ok(())
    }

    /// Nothing to lift: b stays primary.
    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        Ok(run.now())
    }

    /// The hold was the recovery.
    async fn recover(&mut self, _run: &Running, _s: &Settings) {}

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, t: Times) {
        let (code, out) = &self.twinctl;
        f.r.bound(*code == Some(0), format!("twinctl switchover: {out}"));
        f.r.detection_ms = Finished::ms(f.first(t.at, |x| x.primary.as_deref() == Some("b")));
        f.r.bound(f.r.detection_ms.is_some(), "b never became primary");
        f.zero_failed();
    }
}
