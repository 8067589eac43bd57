//! Runs the portal application.
//!
//! In **process** mode the app is the agent's child, in a process group of
//! its own (so a wrapper script and what it starts stop together). One task
//! owns the child: it restarts it with doubling backoff when it exits
//! unexpectedly, and stops it gracefully (SIGTERM to the group, SIGKILL
//! after `stop_timeout`) when asked. The app's stdout and stderr go to its
//! log file; its pid to `state_dir/app.pid`, so that an agent that was
//! killed and restarted stops the orphan it left before starting anew.
//!
//! In **systemd** mode the agent starts and stops the unit with
//! `systemctl` and systemd does the restarting.

use crate::config::App;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// What the status shows of the app.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AppStatus {
    pub running: bool,
    pub pid: Option<u32>,
    /// The release the app runs (or last ran).
    pub version: Option<String>,
    /// Unexpected exits followed by a restart, since the agent started.
    pub restarts: u64,
    pub last_exit: Option<String>,
}

/// Which release to run.
#[derive(Debug, Clone)]
pub struct Release {
    pub dir: PathBuf,
    pub version: String,
}

enum Cmd {
    Start(Release, oneshot::Sender<Result<(), String>>),
    Stop(oneshot::Sender<()>),
}

/// Handle to the supervising task.
#[derive(Clone)]
pub struct Supervisor {
    tx: mpsc::UnboundedSender<Cmd>,
    status: watch::Receiver<AppStatus>,
}

impl Supervisor {
    /// Starts the supervising task (the app itself starts on [`Supervisor::start`]).
    pub fn spawn(app: App, node: String, state_dir: PathBuf) -> Supervisor {
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(AppStatus::default());
        let task = Task {
            app,
            node,
            pid_file: state_dir.join("app.pid"),
            status: status_tx,
        };
        tokio::spawn(task.run(rx));
        Supervisor { tx, status }
    }

    /// Runs `release` (stops nothing: call [`Supervisor::stop`] first to switch).
    pub async fn start(&self, release: Release) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Start(release, tx))
            .map_err(|_| "the supervisor has stopped".to_string())?;
        rx.await
            .map_err(|_| "the supervisor has stopped".to_string())?
    }

    /// Stops the app gracefully and keeps it stopped.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub fn status(&self) -> watch::Receiver<AppStatus> {
        self.status.clone()
    }
}

/// The command line of the app for `release`: `{release}` and `{version}`
/// replaced in every argument.
pub fn command_line(template: &[String], release: &Release) -> Vec<String> {
    let dir = release.dir.to_string_lossy();
    template
        .iter()
        .map(|a| {
            a.replace("{release}", &dir)
                .replace("{version}", &release.version)
        })
        .collect()
}

struct Task {
    app: App,
    node: String,
    pid_file: PathBuf,
    status: watch::Sender<AppStatus>,
}

impl Task {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        match self.app.clone() {
            App::Process { .. } => self.run_process(&mut rx).await,
            App::Systemd { unit, .. } => self.run_systemd(unit, &mut rx).await,
        }
    }

    async fn run_process(self, rx: &mut mpsc::UnboundedReceiver<Cmd>) {
        let App::Process {
            command,
            env,
            log,
            stop_timeout,
            backoff_min,
            backoff_max,
        } = &self.app
        else {
            unreachable!("process mode")
        };
        stop_orphan(&self.pid_file, *stop_timeout).await;
        let mut desired: Option<Release> = None;
        let mut child: Option<Child> = None;
        let mut restart_at: Option<Instant> = None;
        let mut backoff = *backoff_min;
        let mut started_at = Instant::now();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => {
                        if let Some(c) = child.take() {
                            self.stop_child(c, *stop_timeout).await;
                        }
                        return;
                    }
                    Some(Cmd::Start(release, reply)) => {
                        restart_at = None;
                        backoff = *backoff_min;
                        let r = if child.is_some() {
                            Ok(())
                        } else {
                            match self.spawn_child(command, env, log, &release) {
                                Ok(c) => { child = Some(c); started_at = Instant::now(); Ok(()) }
                                Err(e) => Err(e),
                            }
                        };
                        desired = Some(release);
                        let _ = reply.send(r);
                    }
                    Some(Cmd::Stop(reply)) => {
                        desired = None;
                        restart_at = None;
                        if let Some(c) = child.take() {
                            self.stop_child(c, *stop_timeout).await;
                        }
                        let _ = reply.send(());
                    }
                },
                exit = wait(&mut child) => {
                    child = None;
                    let _ = std::fs::remove_file(&self.pid_file);
                    // A run longer than the longest backoff was a good one.
                    if started_at.elapsed() > *backoff_max {
                        backoff = *backoff_min;
                    }
                    tracing::warn!(exit = %exit, restart_in = %humantime::format_duration(backoff), "the app exited unexpectedly; restarting");
                    self.status.send_modify(|s| {
                        s.running = false;
                        s.pid = None;
                        s.last_exit = Some(exit);
                    });
                    restart_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(*backoff_max);
                }
                _ = sleep_until(restart_at) => {
                    restart_at = None;
                    if let Some(release) = &desired {
                        match self.spawn_child(command, env, log, release) {
                            Ok(c) => {
                                child = Some(c);
                                started_at = Instant::now();
                                self.status.send_modify(|s| s.restarts += 1);
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "cannot restart the app");
                                restart_at = Some(Instant::now() + backoff);
                                backoff = (backoff * 2).min(*backoff_max);
                            }
                        }
                    }
                }
            }
        }
    }

    fn spawn_child(
        &self,
        template: &[String],
        env: &[(String, String)],
        log: &Path,
        release: &Release,
    ) -> Result<Child, String> {
        let argv = command_line(template, release);
        if let Some(dir) = log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open the app log {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot open the app log {}: {e}", log.display()))?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&release.dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("TWINPORT_NODE", &self.node)
            .env("TWINPORT_VERSION", &release.version)
            .env("TWINPORT_RELEASE_DIR", &release.dir)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
        let pid = child.id();
        if let Some(pid) = pid {
            let _ = std::fs::write(&self.pid_file, format!("{pid}\n"));
        }
        tracing::info!(?pid, version = %release.version, command = ?argv, "app started");
        self.status.send_modify(|s| {
            s.running = true;
            s.pid = pid;
            s.version = Some(release.version.clone());
        });
        Ok(child)
    }

    async fn stop_child(&self, mut child: Child, timeout: Duration) {
        if let Some(pid) = child.id() {
            let group = Pid::from_raw(pid as i32);
            let _ = killpg(group, Signal::SIGTERM);
            let exit = match tokio::time::timeout(timeout, child.wait()).await {
                Ok(r) => r.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                Err(_) => {
                    tracing::warn!(
                        pid,
                        "the app did not stop within its stop timeout; killing it"
                    );
                    let _ = killpg(group, Signal::SIGKILL);
                    let _ = child.wait().await;
                    "killed after the stop timeout".to_string()
                }
            };
            // Whatever else the group still runs goes with it.
            let _ = killpg(group, Signal::SIGKILL);
            tracing::info!(pid, %exit, "app stopped");
        }
        let _ = std::fs::remove_file(&self.pid_file);
        self.status.send_modify(|s| {
            s.running = false;
            s.pid = None;
        });
    }

    async fn run_systemd(self, unit: String, rx: &mut mpsc::UnboundedReceiver<Cmd>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Cmd::Start(release, reply) => {
                    let r = systemctl(&["restart", &unit]).await;
                    self.status.send_modify(|s| {
                        s.running = r.is_ok();
                        s.version = Some(release.version.clone());
                    });
                    let _ = reply.send(r);
                }
                Cmd::Stop(reply) => {
                    if let Err(e) = systemctl(&["stop", &unit]).await {
                        tracing::error!(error = %e, %unit, "cannot stop the unit");
                    }
                    self.status.send_modify(|s| s.running = false);
                    let _ = reply.send(());
                }
            }
        }
    }
}

async fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "systemctl {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Waits for the child to exit; never resolves without one.
async fn wait(child: &mut Option<Child>) -> String {
    match child {
        Some(c) => match c.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Stops an app left running by an earlier agent process (killed before
/// it could stop it), found by its pid file. A pid that now belongs to a
/// process outside this node's state directory is left alone.
async fn stop_orphan(pid_file: &Path, timeout: Duration) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    let _ = std::fs::remove_file(pid_file);
    let state_dir = pid_file.parent().unwrap_or(Path::new("/"));
    let ours = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .map(|cwd| {
            let state_dir = std::fs::canonicalize(state_dir).unwrap_or(state_dir.to_path_buf());
            cwd.starts_with(state_dir)
        })
        .unwrap_or(false);
    if !ours {
        return;
    }
    tracing::warn!(pid, "stopping the app an earlier agent left running");
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    let end = Instant::now() + timeout;
    while Instant::now() < end && std::path::Path::new(&format!("/proc/{pid}")).exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_in_every_argument() {
        let r = Release {
            dir: PathBuf::from("/var/lib/twinport/releases/2.0.0"),
            version: "2.0.0".into(),
        };
        let t: Vec<String> = ["{release}/bin/app", "--version={version}", "--flag"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command_line(&t, &r),
            [
                "/var/lib/twinport/releases/2.0.0/bin/app",
                "--version=2.0.0",
                "--flag"
            ]
        );
    }

    fn process_app(dir: &Path, script: &str) -> App {
        std::fs::create_dir_all(dir).unwrap();
        App::Process {
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![],
            log: dir.join("app.log"),
            stop_timeout: Duration::from_millis(300),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
        }
    }

    /// Waits until the app's log holds `n` lines with `text`.
    async fn wait_log(dir: &Path, text: &str, n: usize) {
        for _ in 0..500 {
            let log = std::fs::read_to_string(dir.join("app.log")).unwrap_or_default();
            if log.matches(text).count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let log = std::fs::read_to_string(dir.join("app.log")).unwrap_or_default();
        panic!("the app did not log `{text}` {n} times: {log}");
    }

    /// A supervisor of `script` (run by sh) in a fresh directory named by
    /// `tag`, with the app started as release 1.
    async fn started(
        tag: &str,
        script: &str,
    ) -> (PathBuf, Supervisor, watch::Receiver<AppStatus>, u32) {
        let dir = std::env::temp_dir().join(format!("twinport-sup-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sup = Supervisor::spawn(process_app(&dir, script), "a".into(), dir.clone());
        let mut st = sup.status();
        let release = Release {
            dir: dir.clone(),
            version: "1".into(),
        };
        sup.start(release).await.unwrap();
        let pid = wait_for(&mut st, |s| s.running).await.pid.unwrap();
        (dir, sup, st, pid)
    }

    async fn wait_for(
        rx: &mut watch::Receiver<AppStatus>,
        f: impl Fn(&AppStatus) -> bool,
    ) -> AppStatus {
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| f(s)))
            .await
            .expect("in time")
            .expect("supervisor alive")
            .clone()
    }

    #[tokio::test]
    async fn a_crashed_app_is_restarted_and_a_stopped_one_stays_stopped() {
        let (dir, sup, mut st, pid) =
            started("crash", "echo started $TWINPORT_VERSION; exec sleep 30").await;
        wait_log(&dir, "started 1", 1).await;
        assert_eq!(
            std::fs::read_to_string(dir.join("app.pid")).unwrap().trim(),
            pid.to_string()
        );

        nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        let again = wait_for(&mut st, |s| s.running && s.restarts == 1).await;
        wait_log(&dir, "started 1", 2).await;
        assert_ne!(again.pid, Some(pid));
        assert!(again.last_exit.unwrap().contains("SIGKILL"));

        sup.stop().await;
        let stopped = st.borrow().clone();
        assert!(!stopped.running && stopped.pid.is_none());
        assert!(!dir.join("app.pid").exists());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!st.borrow().running, "a stopped app is not restarted");
        let log = std::fs::read_to_string(dir.join("app.log")).unwrap();
        assert_eq!(log.matches("started 1").count(), 2, "no third start: {log}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_app_that_ignores_sigterm_is_killed_after_the_timeout() {
        let (dir, sup, _st, pid) = started(
            "term",
            "trap '' TERM; echo armed; while :; do sleep 0.05; done",
        )
        .await;
        wait_log(&dir, "armed", 1).await;
        let t = std::time::Instant::now();
        sup.stop().await;
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || {
                // A zombie is gone as soon as it is reaped; give it a moment.
                std::thread::sleep(Duration::from_millis(100));
                !Path::new(&format!("/proc/{pid}")).exists()
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
