//! The whole appliance from its built binaries, on loopback: the gateway,
//! and per twin node a `node-agent` supervising the ticketing service as
//! its app, both twins on one store (a SQLite file, or PostgreSQL).
//!
//! Every process gets fresh ports and a fresh directory; every file it
//! needs (configs, tokens, the release) is written here, as an installer
//! would. Nothing outside that directory and loopback is touched.

use crate::fault::FaultProxy;
use anyhow::{bail, Context};
use devtools::{free_addr, write_secret, Proc, Started, TempDir};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "chaos-admin-token-0123456789abcdef";
pub const AGENT_TOKEN: &str = "chaos-agent-token-0123456789abcdef";
pub const KIOSK_TOKEN: &str = "chaos-kiosk-token-0123456789abcdef";
pub const DESK_TOKEN: &str = "chaos-desk-token-0123456789abcdef";
pub const MANAGER_TOKEN: &str = "chaos-manager-token-0123456789abcdef";
pub const BRANCH: &str = "centrum";

/// The gateway's active health check. The bound for a hang or a blackhole
/// is derived from these (see [`HealthCheck::detection_bound`]).
#[derive(Debug, Clone, Copy)]
pub struct HealthCheck {
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    /// False: checks every hour, no cutting of sessions — "switched off",
    /// to show that the bounds catch a gateway that does not detect.
    pub enabled: bool,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            interval: Duration::from_millis(250),
            timeout: Duration::from_millis(250),
            fall: 2,
            enabled: true,
        }
    }
}

impl HealthCheck {
    /// The longest a silent node can stay "up" at the gateway: the
    /// gateway's own bound for these settings
    /// ([`gateway::health::detection_bound`]).
    pub fn detection_bound(&self) -> Duration {
        gateway::health::detection_bound(self.interval, self.timeout, self.fall)
    }

    /// The bound and how it follows from the settings, for the report.
    pub fn explain_bound(&self) -> String {
        format!(
            "interval {} ms + max(interval, timeout {} ms) × fall {} = {} ms",
            self.interval.as_millis(),
            self.timeout.as_millis(),
            self.fall,
            self.detection_bound().as_millis()
        )
    }
}

/// Where both twins keep the queue.
#[derive(Debug, Clone)]
pub enum Store {
    /// A SQLite file in this directory (the appliance's own by default).
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL database URL.
    Postgres(String),
}

/// How to start the appliance.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `gateway`, `node-agent`, `ticketing` and `twinctl` are.
    pub bin_dir: PathBuf,
    pub store: Store,
    pub health: HealthCheck,
    /// Reach the nodes through fault proxies (slow and lossy links).
    pub proxied: bool,
}

/// One twin: its agent, the app the agent supervises, and the links to both.
pub struct Node {
    pub name: &'static str,
    /// The ticketing service (the app).
    pub app: SocketAddr,
    /// The agent's `/ready`.
    pub ready: SocketAddr,
    /// The agent's control API.
    pub control: SocketAddr,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    /// While this file exists the agent's `flap` probe fails.
    pub flap_marker: PathBuf,
    /// Fault proxies in front of the app and the agent (if proxied).
    pub app_link: Option<FaultProxy>,
    pub agent_link: Option<FaultProxy>,
    pub agent: Option<Proc>,
}

impl Node {
    /// The app's pid, from the agent's pid file.
    pub fn app_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state_dir.join("app.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The pids of the node's processes: agent and app.
    pub fn pids(&self) -> Vec<i32> {
        self.agent
            .as_ref()
            .map(|p| p.pid())
            .into_iter()
            .chain(self.app_pid())
            .collect()
    }

    /// Sends `sig` to the agent and the app.
    pub fn signal(&self, sig: &str) {
        for pid in self.pids() {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status();
        }
    }

    /// kill -9 of the app and the agent: the node is gone.
    pub fn crash(&mut self) {
        self.signal("KILL");
        if let Some(mut p) = self.agent.take() {
            p.kill();
        }
    }

    /// Its agent or its app said that a port it was given is taken.
    pub fn says_port_taken(&self) -> bool {
        let app_log = self.log.with_file_name(format!("app-{}.log", self.name));
        self.agent.as_ref().is_some_and(Proc::says_port_taken)
            || std::fs::read_to_string(app_log).is_ok_and(|t| devtools::says_port_taken(&t))
    }

    /// Starts the agent (which starts the app, stopping an orphan first).
    pub fn start_agent(&mut self, bin_dir: &Path) -> anyhow::Result<()> {
        let mut cmd = Command::new(bin_dir.join("node-agent"));
        cmd.arg("--config").arg(&self.config);
        self.agent = Some(Proc::spawn(
            &format!("node-agent {}", self.name),
            cmd,
            Some(&self.log),
        ));
        Ok(())
    }

    /// The links in front of the node (app and agent), if proxied.
    pub fn set_link(&self, fault: crate::fault::Fault) {
        for l in [&self.app_link, &self.agent_link].into_iter().flatten() {
            l.set(fault);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal("CONT");
        if let Some(p) = &mut self.agent {
            // The agent stops its app on SIGTERM.
            p.signal("TERM");
            let _ = p.wait_exit(Duration::from_secs(5));
        }
        if let Some(pid) = self.app_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{pid}")])
                .status();
        }
    }
}

/// The running appliance.
pub struct Appliance {
    pub opts: Options,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub gateway_config: PathBuf,
    pub gateway_log: PathBuf,
    pub gateway: Proc,
    pub nodes: [Node; 2],
    pub database: String,
    client: reqwest::Client,
    // Last: removed after every process is gone.
    pub dir: TempDir,
}

fn app_token_paths(dir: &Path) -> String {
    format!(
        "      kiosk: {k}\n      desk: {d}\n      manager: {m}\n",
        k = dir.join("kiosk.token").display(),
        d = dir.join("desk.token").display(),
        m = dir.join("manager.token").display()
    )
}

/// The ticketing service's config for node `name`.
fn ticketing_yaml(
    dir: &Path,
    name: &str,
    listen: SocketAddr,
    database: &str,
    public: SocketAddr,
) -> String {
    format!(
        "node: {name}
listen: {listen}
database: {database}
max_connections: 8
kiosk_rate_limit: 0
public_url: http://{public}
branches:
  - id: {BRANCH}
    name: Chaos branch
    time_zone: Europe/Warsaw
    opening_hours: {{ mon: 00:00-24:00, tue: 00:00-24:00, wed: 00:00-24:00, thu: 00:00-24:00, fri: 00:00-24:00, sat: 00:00-24:00, sun: 00:00-24:00 }}
    tokens:
{tokens}    services:
      - {{ prefix: A, name: {{ pl: Dowody, en: ID cards }}, target_wait: 10m, max_wait: 30m, service_time: 6m }}
      - {{ prefix: B, name: {{ pl: Paszporty, en: Passports }}, target_wait: 15m, max_wait: 40m, service_time: 10m }}
      - {{ prefix: C, name: {{ pl: Pojazdy, en: Vehicles }}, target_wait: 20m, service_time: 12m }}
    desks:
      - {{ id: \"1\", services: [A, B] }}
      - {{ id: \"2\", services: [B, A] }}
      - {{ id: \"3\", services: [C, A] }}
",
        tokens = app_token_paths(dir),
    )
}

/// The `gateway:` section of a node-agent's config for the single gateway
/// whose admin API is at `admin` (plain HTTP on loopback).
pub(crate) fn gateway_link_yaml(dir: &Path, admin: SocketAddr) -> String {
    format!(
        "gateway:\n  admin: http://{admin}\n  token_file: {}/admin.token\n",
        dir.display()
    )
}

/// The node-agent's config for node `name`; `gateway` is its `gateway:`
/// section.
fn agent_yaml(dir: &Path, n: &Node, gateway: &str) -> String {
    let name = n.name;
    format!(
        "node: {name}
listen: {ready}
control:
  listen: {control}
  token_file: {dir}/agent.token
  audit_log: {dir}/agent-{name}-audit.log
state_dir: {state}
app:
  command: [\"{{release}}/ticketing\", \"--config\", \"{dir}/ticketing-{name}.yaml\"]
  log: {dir}/app-{name}.log
  stop_timeout: 5s
  restart_backoff_min: 200ms
  restart_backoff_max: 2s
probes:
  - name: http
    http: {{ url: \"http://{app}/ready\", status: 200, body_contains: '\"node\":\"{name}\"' }}
    interval: 100ms
    timeout: 200ms
    rise: 2
    fall: 2
  - name: flap
    command: [\"sh\", \"-c\", \"test ! -e {marker}\"]
    interval: 50ms
    timeout: 500ms
    rise: 1
    fall: 1
  - name: disk
    disk: {{ path: {state}, min_free_mib: 1 }}
    interval: 5s
    rise: 1
upgrade:
  keep_releases: 2
  drain_timeout: 20s
  start_timeout: 20s
{gateway}",
        ready = n.ready,
        control = n.control,
        dir = dir.display(),
        state = n.state_dir.display(),
        app = n.app,
        marker = n.flap_marker.display(),
    )
}

/// Which of two valid gateway configs to write (reloads alternate them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    First,
    Second,
}

impl Appliance {
    /// Starts everything and returns once the gateway sees both twins up,
    /// node a primary, and every desk is open. When a port it was given
    /// was taken by another process in between, everything starts again
    /// on new ports, in a new folder.
    pub async fn start(tag: &str, opts: Options) -> anyhow::Result<Appliance> {
        for attempt in 1..=devtools::PORT_ATTEMPTS {
            match Appliance::start_once(tag, opts.clone()).await {
                Err(e) if e.is::<PortTaken>() => {
                    eprintln!(
                        "{e}; starting again on new ports ({attempt}/{})",
                        devtools::PORT_ATTEMPTS
                    )
                }
                other => return other,
            }
        }
        bail!(
            "a port was taken {} times in a row",
            devtools::PORT_ATTEMPTS
        )
    }

    async fn start_once(tag: &str, opts: Options) -> anyhow::Result<Appliance> {
        let dir = TempDir::new(&format!("chaos-{tag}"));
        let d = dir.path().to_path_buf();
        for (file, token) in [
            ("admin.token", ADMIN_TOKEN),
            ("agent.token", AGENT_TOKEN),
            ("kiosk.token", KIOSK_TOKEN),
            ("desk.token", DESK_TOKEN),
            ("manager.token", MANAGER_TOKEN),
        ] {
            write_secret(&d.join(file), token);
        }
        let database = match &opts.store {
            Store::Sqlite(folder) => format!(
                "sqlite://{}",
                folder
                    .as_deref()
                    .unwrap_or(&d)
                    .join("ticketing.db")
                    .display()
            ),
            Store::Postgres(url) => url.clone(),
        };
        let (http, admin, metrics) = (free_addr(), free_addr(), free_addr());
        let mut nodes = Vec::new();
        for name in ["a", "b"] {
            let host = std::net::Ipv4Addr::LOCALHOST.into();
            let link = gateway_link_yaml(&d, admin);
            nodes.push(install_node(&d, name, &opts, &database, host, http, &link).await?);
        }
        let [a, b]: [Node; 2] = nodes.try_into().ok().expect("two nodes");
        let gateway_config = d.join("gateway.yaml");
        let gateway_log = d.join("gateway.log");
        let mut me = Appliance {
            http,
            admin,
            metrics,
            gateway_config: gateway_config.clone(),
            gateway_log: gateway_log.clone(),
            gateway: Proc::spawn("placeholder", Command::new("true"), None),
            nodes: [a, b],
            database,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            opts,
            dir,
        };
        // Health checks bring the nodes up at the start even when the run
        // switches them off: that is done by a reload once both are up.
        let wanted = me.opts.health;
        me.opts.health.enabled = true;
        me.write_gateway_config(Variant::First)?;
        let mut cmd = Command::new(me.opts.bin_dir.join("gateway"));
        cmd.arg("--config").arg(&gateway_config);
        me.gateway = Proc::spawn("gateway", cmd, Some(&gateway_log));
        match devtools::wait_started(
            &mut me.gateway,
            &[http, admin, metrics],
            Duration::from_secs(20),
        ) {
            Started::Up => {}
            Started::PortTaken => return Err(PortTaken("the gateway").into()),
            Started::Failed => bail!(
                "the gateway did not open its listeners; log:\n{}",
                me.gateway_log_text()
            ),
        }
        // Node a first, so that it is the primary.
        for n in 0..2 {
            let bin = me.opts.bin_dir.clone();
            me.nodes[n].start_agent(&bin)?;
            let name = me.nodes[n].name;
            if !me.wait_health(name, "up", Duration::from_secs(30)).await {
                if me.nodes[n].says_port_taken() {
                    return Err(PortTaken(["node a", "node b"][n]).into());
                }
                bail!(
                    "the gateway did not see node {name} up; agent log:\n{}\napp log:\n{}",
                    std::fs::read_to_string(&me.nodes[n].log).unwrap_or_default(),
                    std::fs::read_to_string(d.join(format!("app-{name}.log"))).unwrap_or_default()
                );
            }
        }
        if !wanted.enabled {
            me.opts.health = wanted;
            me.write_gateway_config(Variant::First)?;
            let (code, body) = me.admin_call("POST", "/v1/config/reload").await?;
            if code != 200 {
                bail!("switching health checks off: {code} {body}");
            }
        }
        open_desks(&me.client, &me.url("")).await?;
        Ok(me)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn gateway_log_text(&self) -> String {
        std::fs::read_to_string(&self.gateway_log).unwrap_or_default()
    }

    /// The gateway's config, one of two valid variants (they differ in
    /// failback hold-down and the passive error limit: both reloadable).
    pub fn gateway_yaml(&self, variant: Variant) -> String {
        let d = self.dir.path();
        let hc = self.opts.health;
        let (interval, cut) = if hc.enabled {
            (format!("{}ms", hc.interval.as_millis()), true)
        } else {
            ("1h".to_string(), false)
        };
        let (hold_down, error_limit) = match variant {
            Variant::First => ("30s", 5),
            Variant::Second => ("31s", 6),
        };
        let node = |n: &Node| {
            let app = n.app_link.as_ref().map_or(n.app, |l| l.addr);
            let agent = n.agent_link.as_ref().map_or(n.ready, |l| l.addr);
            format!(
                "  - name: {}\n    address: {app}\n    agent: {agent}\n    weight: 100\n",
                n.name
            )
        };
        format!(
            "listeners:
  http: {http}
  metrics: {metrics}
  admin: {admin}
admin:
  token_file: {dir}/admin.token
  audit_log: {dir}/gateway-audit.log
watch_config: false
mode: active-standby
primary: a
nodes:
{a}{b}health_check:
  path: /ready
  interval: {interval}
  timeout: {timeout}ms
  rise: 2
  fall: {fall}
  shutdown_sessions_on_down: {cut}
passive:
  error_limit: {error_limit}
failback:
  preempt: false
  hold_down: {hold_down}
timeouts:
  connect: 500ms
  read: 30s
  write: 30s
server:
  threads: 2
  grace_period: 2s
  graceful_shutdown_timeout: 5s
  pid_file: {dir}/gateway.pid
  upgrade_socket: {dir}/gateway-upgrade.sock
",
            http = self.http,
            metrics = self.metrics,
            admin = self.admin,
            dir = d.display(),
            a = node(&self.nodes[0]),
            b = node(&self.nodes[1]),
            timeout = hc.timeout.as_millis(),
            fall = hc.fall,
        )
    }

    pub fn write_gateway_config(&self, variant: Variant) -> anyhow::Result<()> {
        write_atomically(&self.gateway_config, &self.gateway_yaml(variant))
    }

    /// An admin API call with the operator token: status and JSON body.
    pub async fn admin_call(&self, method: &str, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .client
            .request(method.parse()?, format!("http://{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        let code = r.status().as_u16();
        Ok((code, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn status(&self) -> anyhow::Result<Value> {
        Ok(self.admin_call("GET", "/v1/status").await?.1)
    }

    /// Waits until the gateway reports node `name` with `health`.
    pub async fn wait_health(&self, name: &str, health: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(s) = self.status().await {
                if node_field(&s, name, "health") == Some(health) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// The sum of every sample of the metric family `name`.
    pub async fn metric_sum(&self, name: &str) -> f64 {
        let Ok(r) = self
            .client
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
        else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Runs `twinctl` with the admin URL and token: exit code and output.
    pub fn twinctl(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut cmd = Command::new(self.opts.bin_dir.join("twinctl"));
        cmd.arg("--admin")
            .arg(format!("http://{}", self.admin))
            .arg("--token-file")
            .arg(self.dir.path().join("admin.token"))
            .args(args);
        exit_and_output(cmd, "twinctl")
    }

    /// `twinctl rolling-upgrade` arguments: both nodes to `version`
    /// through their agents, the ticketing binary as the release.
    pub fn rolling_upgrade_args(
        bin_dir: &Path,
        dir: &Path,
        nodes: &[Node; 2],
        version: &str,
    ) -> Vec<String> {
        let mut args: Vec<String> = ["rolling-upgrade", "--release"].map(String::from).to_vec();
        args.push(bin_dir.join("ticketing").display().to_string());
        args.extend(["--version".to_string(), version.to_string()]);
        for n in nodes {
            args.extend([
                "--agent".to_string(),
                format!("{}=http://{}", n.name, n.control),
            ]);
        }
        args.extend([
            "--agent-token-file".to_string(),
            dir.join("agent.token").display().to_string(),
            "--step-timeout".to_string(),
            "60s".to_string(),
        ]);
        args
    }

    pub fn gateway_pid_file(&self) -> PathBuf {
        self.dir.path().join("gateway.pid")
    }
}

/// A port given to a daemon was taken by another process in between.
#[derive(Debug, thiserror::Error)]
#[error("{0}: a port it was given was taken by another process")]
struct PortTaken(&'static str);

/// Node `name`'s files in `d`: its ticketing and agent configs, release
/// 1.0.0 installed (the agent itself is started later), fault proxies in
/// front of its app and agent when the run is proxied. The app and the
/// agent's `/ready` listen on `host` (loopback, or the address the gateway
/// pair reaches the twins at), the agent's control API on loopback.
pub(crate) async fn install_node(
    d: &Path,
    name: &'static str,
    opts: &Options,
    database: &str,
    host: std::net::IpAddr,
    http: SocketAddr,
    gateway: &str,
) -> anyhow::Result<Node> {
    let app = SocketAddr::new(host, free_addr().port());
    let ready = SocketAddr::new(host, free_addr().port());
    let (app_link, agent_link) = if opts.proxied {
        (
            Some(FaultProxy::start(app).await?),
            Some(FaultProxy::start(ready).await?),
        )
    } else {
        (None, None)
    };
    let node = Node {
        name,
        app,
        ready,
        control: free_addr(),
        config: d.join(format!("node-{name}.yaml")),
        state_dir: d.join(format!("node-{name}")),
        log: d.join(format!("agent-{name}.log")),
        flap_marker: d.join(format!("flap-{name}")),
        app_link,
        agent_link,
        agent: None,
    };
    std::fs::write(
        d.join(format!("ticketing-{name}.yaml")),
        ticketing_yaml(d, name, app, database, http),
    )?;
    std::fs::write(&node.config, agent_yaml(d, &node, gateway))?;
    let out = Command::new(opts.bin_dir.join("node-agent"))
        .arg("--config")
        .arg(&node.config)
        .args(["install", "--version", "1.0.0", "--release"])
        .arg(opts.bin_dir.join("ticketing"))
        .output()
        .context("run node-agent install")?;
    if !out.status.success() {
        bail!(
            "node-agent install on {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(node)
}

/// Runs `cmd` (a CLI such as twinctl): its exit code and its output,
/// stdout then stderr.
pub(crate) fn exit_and_output(mut cmd: Command, what: &str) -> (Option<i32>, String) {
    match cmd.output() {
        Ok(o) => (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        ),
        Err(e) => (None, format!("cannot run {what}: {e}")),
    }
}

/// Opens the branch's three desks through the gateway at `base`.
pub(crate) async fn open_desks(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for desk in ["1", "2", "3"] {
        let r = client
            .post(format!("{base}/api/v1/branches/{BRANCH}/desks/{desk}/open"))
            .bearer_auth(DESK_TOKEN)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("opening desk {desk}: {}", r.status());
        }
    }
    Ok(())
}

/// The value of `field` of node `name` in a gateway status document.
pub fn node_field<'a>(status: &'a Value, name: &str, field: &str) -> Option<&'a str> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)?[field]
        .as_str()
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suite's health check is the gateway's default one, so the bound
    /// it holds the gateway to is the one the README states (750 ms).
    #[test]
    fn the_suite_checks_the_gateway_s_default_bound() {
        let hc = HealthCheck::default();
        assert_eq!(hc.interval, gateway::config::defaults::HEALTH_INTERVAL);
        assert_eq!(hc.timeout, gateway::config::defaults::HEALTH_TIMEOUT);
        assert_eq!(hc.fall, gateway::config::defaults::FALL);
        assert_eq!(hc.detection_bound(), Duration::from_millis(750));
        let readme = include_str!("../../README.md");
        let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
        let stated = format!(
            "A hung node is declared down within {} ms.",
            hc.detection_bound().as_millis()
        );
        assert!(readme.contains(&stated), "the README must say: {stated}");
    }
}
