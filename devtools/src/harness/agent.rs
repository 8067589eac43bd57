//! Real processes on ephemeral loopback ports: the gateway (through the
//! gateway tests' own harness), and per twin a `node-agent` supervising a
//! `demo-node` app started from a release directory.

pub use super::gateway as gw;

use crate::{bin, free_addr, on_free_ports, wait_started, Proc, Started, TempDir};
use gw::{Gateway, GwOpts};
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The gateway's admin token (the gateway harness writes the same).
pub const GATEWAY_TOKEN: &str = "test-token-0123456789abcdef";
pub const AGENT_TOKEN: &str = "agent-token-0123456789abcdef";
/// The agent's read-only token (`control.read_token_file`).
pub const AGENT_READ_TOKEN: &str = "agent-read-token-0123456789abcdef";

/// A release directory holding an `app` script: `good` runs the demo node
/// (reporting the release's version), otherwise it never opens its port.
pub fn release(dir: &TempDir, version: &str, good: bool) -> PathBuf {
    let r = dir.path().join(format!("release-{version}"));
    std::fs::create_dir_all(&r).unwrap();
    let script = if good {
        format!("#!/bin/sh\nexec {} \"$@\"\n", bin("demo-node").display())
    } else {
        "#!/bin/sh\necho this release never gets ready\nexec sleep 600\n".to_string()
    };
    let app = r.join("app");
    std::fs::write(&app, script).unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    r
}

/// One twin: a node-agent and the app it supervises.
pub struct Twin {
    pub name: String,
    pub app: SocketAddr,
    pub ready: SocketAddr,
    pub control: SocketAddr,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub audit: PathBuf,
    pub fail_marker: PathBuf,
    pub log: PathBuf,
    pub proc: Proc,
}

impl Twin {
    /// Installs release 1.0.0 and starts the agent on `app` and `ready`,
    /// linked to the gateway's admin API at `admin`. `upgrade_yaml` is the
    /// config's `upgrade:` section body (indented by two spaces).
    pub fn start(
        dir: &TempDir,
        name: &str,
        addrs: (SocketAddr, SocketAddr),
        admin: SocketAddr,
        upgrade_yaml: &str,
    ) -> Twin {
        Twin::start_with_env(dir, name, addrs, admin, upgrade_yaml, &[])
    }

    /// [`Twin::start`] with extra environment for the agent process.
    pub fn start_with_env(
        dir: &TempDir,
        name: &str,
        addrs: (SocketAddr, SocketAddr),
        admin: SocketAddr,
        upgrade_yaml: &str,
        env: &[(String, String)],
    ) -> Twin {
        Twin::try_start(dir, name, addrs, admin, upgrade_yaml, env)
            .unwrap_or_else(|| panic!("agent {name}: a port it was given is taken"))
    }

    /// `None`: a port it was given is taken (its log says so).
    pub fn try_start(
        dir: &TempDir,
        name: &str,
        (app, ready): (SocketAddr, SocketAddr),
        admin: SocketAddr,
        upgrade_yaml: &str,
        env: &[(String, String)],
    ) -> Option<Twin> {
        let control = free_addr();
        let p = |s: &str| dir.path().join(format!("{s}-{name}"));
        let (config, state_dir, audit, fail_marker, log) = (
            p("agent.yaml"),
            p("state"),
            p("agent-audit.log"),
            p("fail"),
            p("agent.log"),
        );
        crate::write_secret(&dir.path().join("agent.token"), AGENT_TOKEN);
        crate::write_secret(&dir.path().join("agent-read.token"), AGENT_READ_TOKEN);
        let yaml = format!(
            "node: {name}
listen: {ready}
control:
  listen: {control}
  token_file: agent.token
  read_token_file: agent-read.token
  audit_log: {audit}
state_dir: {state}
app:
  command: [\"{{release}}/app\", \"--name\", \"{name}\", \"--listen\", \"{app}\", \"--version\", \"{{version}}\", \"--journal\", \"{journal}\"]
  stop_timeout: 3s
  restart_backoff_min: 600ms
probes:
  - name: http
    http: {{ url: \"http://{app}/whoami\", body_contains: \"{name}\" }}
    interval: 100ms
    timeout: 250ms
  - name: marker
    command: [\"sh\", \"-c\", \"test ! -e {marker}\"]
    interval: 100ms
    timeout: 500ms
  - name: disk
    disk: {{ path: /, min_free_mib: 1 }}
    interval: 1s
    rise: 1
upgrade:
{upgrade_yaml}
gateway:
  admin: http://{admin}
  token_file: admin.token
",
            audit = audit.display(),
            state = state_dir.display(),
            journal = dir.path().join(format!("journal-{name}.txt")).display(),
            marker = fail_marker.display(),
        );
        std::fs::write(&config, yaml).unwrap();
        let install = Command::new(bin("node-agent"))
            .arg("--config")
            .arg(&config)
            .args(["install", "--version", "1.0.0", "--release"])
            .arg(release(dir, "1.0.0", true))
            .output()
            .unwrap();
        assert!(
            install.status.success(),
            "install: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        let mut cmd = Command::new(bin("node-agent"));
        cmd.arg("--config").arg(&config).envs(env.iter().cloned());
        let mut proc = Proc::spawn(&format!("node-agent {name}"), cmd, Some(&log));
        match wait_started(&mut proc, &[ready, control], Duration::from_secs(10)) {
            Started::Up => {}
            Started::PortTaken => return None,
            Started::Failed => panic!(
                "agent {name} did not open {ready} and {control}; log:\n{}",
                proc.log_text()
            ),
        }
        Some(Twin {
            name: name.into(),
            app,
            ready,
            control,
            config,
            state_dir,
            audit,
            fail_marker,
            log,
            proc,
        })
    }

    pub fn control_url(&self) -> String {
        format!("http://{}", self.control)
    }

    /// A control API call with the agent token.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(
                method.parse().unwrap(),
                format!("http://{}{path}", self.control),
            )
            .bearer_auth(AGENT_TOKEN);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("control API answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn status(&self) -> Value {
        self.call("GET", "/v1/status", None).await.1
    }

    pub async fn ready(&self) -> (u16, Value) {
        let r = reqwest::get(format!("http://{}/ready", self.ready))
            .await
            .expect("/ready answers");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the agent reports `state`.
    pub async fn wait_state(&self, state: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.ready().await.1["state"] == state {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn audit_lines(&self) -> Vec<Value> {
        read_json_lines(&self.audit)
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        // The agent stops its app on SIGTERM; a killed agent leaves it, so
        // stop it by its pid file too.
        self.proc.signal("TERM");
        let _ = self.proc.wait_exit(Duration::from_secs(5));
        if let Ok(pid) = std::fs::read_to_string(self.state_dir.join("app.pid")) {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", pid.trim())])
                .status();
        }
    }
}

pub fn read_json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The gateway, and behind it two twins with agents linked to its admin
/// API; returns once the gateway sees both up. Primary: a.
pub async fn appliance(tag: &str, upgrade_yaml: &str) -> (TempDir, Twin, Twin, Gateway) {
    appliance_with(tag, upgrade_yaml, &GwOpts::default()).await
}

/// [`appliance`] with the gateway started with `opts` (HTTPS, mode…).
pub async fn appliance_with(
    tag: &str,
    upgrade_yaml: &str,
    opts: &GwOpts,
) -> (TempDir, Twin, Twin, Gateway) {
    // The twins' ports are in the gateway's config: when one is taken,
    // everything starts again on new ports, in a new folder.
    let (dir, a, b, gw) = on_free_ports("the appliance", || {
        let dir = TempDir::new(tag);
        let addrs = [(free_addr(), free_addr()), (free_addr(), free_addr())];
        let targets = [("a", addrs[0]), ("b", addrs[1])]
            .map(|(n, (app, ready))| (n.to_string(), app.to_string(), ready.to_string()));
        let gw = Gateway::start_with(&dir, targets, opts, "");
        let a = Twin::try_start(&dir, "a", addrs[0], gw.admin, upgrade_yaml, &[])?;
        let b = Twin::try_start(&dir, "b", addrs[1], gw.admin, upgrade_yaml, &[])?;
        Some((dir, a, b, gw))
    });
    for n in ["a", "b"] {
        assert!(
            wait_gateway_health(&gw, n, "up", Duration::from_secs(15)).await,
            "the gateway did not see node {n} up; agent log:\n{}",
            if n == "a" { a.log_text() } else { b.log_text() }
        );
    }
    (dir, a, b, gw)
}

pub const UPGRADE: &str = "  drain_timeout: 20s\n  start_timeout: 5s\n";

/// Waits until the gateway reports node `name` with `health`.
pub async fn wait_gateway_health(
    gw: &Gateway,
    name: &str,
    health: &str,
    timeout: Duration,
) -> bool {
    let has = |s: &Value| {
        s["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["name"] == name && n["health"] == health)
    };
    has(&gw.wait_status(timeout, has).await)
}
