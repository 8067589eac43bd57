//! `rolling-upgrade`: `twinctl rolling-upgrade` of both nodes to 2.0.0
//! through their agents. Zero failed requests; both at 2.0.0 at the end.

use super::{Finished, Running, Scenario, Settings, Times};
use async_trait::async_trait;
use std::time::Duration;

#[derive(Default)]
pub struct RollingUpgrade {
    twinctl: (Option<i32>, String),
}

#[async_trait]
impl Scenario for RollingUpgrade {
    fn name(&self) -> &'static str {
        "rolling-upgrade"
    }

    fn summary(&self) -> &'static str {
        "twinctl rolling-upgrade of both nodes to 2.0.0"
    }

    async fn fault(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<()> {
        let a = &run.app;
        let args = crate::appliance::Appliance::rolling_upgrade_args(
            &s.bin_dir,
            a.dir(),
            &a.nodes,
            "2.0.0",
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.twinctl = tokio::task::block_in_place(|| a.twinctl(&args));
        Ok(())
    }

    /// Done when twinctl returns: both upgraded, verified and back.
    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        Ok(run.now())
    }

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, t: Times) {
        let (code, out) = &self.twinctl;
        f.r.bound(
            *code == Some(0),
            format!("twinctl rolling-upgrade exited {code:?}: {out}"),
        );
        let last = f.seen.last().cloned();
        f.r.bound(
            last.as_ref()
                .is_some_and(|x| x.version == ["2.0.0", "2.0.0"]),
            format!(
                "versions at the gateway at the end: {:?}",
                last.map(|x| x.version)
            ),
        );
        f.r.recovery_ms = Finished::ms(Some(t.lifted - t.at));
        f.r.notes
            .push("recovered = both nodes upgraded, verified and back in service".into());
        f.zero_failed();
    }
}
