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
        let agents: Vec<String> = a
            .nodes
            .iter()
            .map(|n| format!("{}=http://{}", n.name, n.control))
            .collect();
        let release = s.bin_dir.join("ticketing").display().to_string();
        let token = a.dir().join("agent.token").display().to_string();
        self.twinctl = tokio::task::block_in_place(|| {
            a.twinctl(&[
                "rolling-upgrade",
                "--release",
                &release,
                "--version",
                "2.0.0",
                "--agent",
                &agents[0],
                "--agent",
                &agents[1],
                "--agent-token-file",
                &token,
                "--step-timeout",
                "60s",
            ])
        });
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
