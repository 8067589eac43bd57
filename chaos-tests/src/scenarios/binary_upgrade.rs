//! `binary-upgrade`: a new gateway process takes the sockets over, the
//! old one gets SIGQUIT and exits. Zero failed requests.

use super::{Finished, Running, Scenario, Settings, Times};
use async_trait::async_trait;
use std::time::Duration;

#[derive(Default)]
pub struct BinaryUpgrade {
    /// SIGQUIT to the old process.
    quit_at: Duration,
    /// The old process had exited (or the wait for it ended).
    gone_at: Duration,
    exited: bool,
    moved: bool,
}

#[async_trait]
impl Scenario for BinaryUpgrade {
    fn name(&self) -> &'static str {
        "binary-upgrade"
    }

    fn summary(&self) -> &'static str {
        "a new gateway process takes the sockets over (SIGQUIT)"
    }

    async fn fault(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<()> {
        let mut cmd = std::process::Command::new(s.bin_dir.join("gateway"));
        cmd.arg("--config")
            .arg(&run.app.gateway_config)
            .arg("--upgrade");
        let log = run.app.dir().join("gateway-new.log");
        let new = devtools::Proc::spawn("gateway (new)", cmd, Some(&log));
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.quit_at = run.now();
        run.app.gateway.signal("QUIT");
        let exited =
            tokio::task::block_in_place(|| run.app.gateway.wait_exit(Duration::from_secs(20)));
        self.gone_at = run.now();
        self.exited = exited.is_some();
        let pid_file = run.app.gateway_pid_file();
        let new_pid = new.pid();
        self.moved = devtools::eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == new_pid.to_string())
        });
        run.app.gateway = new;
        Ok(())
    }

    /// The old process is gone: measured in `fault`, when it exited.
    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        Ok(run.now())
    }

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, _t: Times) {
        f.r.bound(self.exited, "the old gateway did not exit");
        f.r.bound(self.moved, "the new gateway did not take the pid file");
        f.r.recovery_ms = Finished::ms(Some(self.gone_at - self.quit_at));
        f.r.notes
            .push("recovered = the old process exited; the new one served throughout".into());
        f.zero_failed();
    }
}
