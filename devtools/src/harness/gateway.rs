//! Real processes on ephemeral loopback ports: two demo twin nodes and the
//! gateway binary, configured through a YAML file written per test.

use crate::{bin, free_addr, on_free_ports, wait_started, Proc, Started, TempDir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A temp dir and twin nodes `a` and `b` in it.
pub fn twins(tag: &str) -> (TempDir, Node, Node) {
    let dir = TempDir::new(tag);
    let a = Node::start(&dir, "a");
    let b = Node::start(&dir, "b");
    (dir, a, b)
}

pub struct Node {
    pub name: String,
    pub version: String,
    pub app: SocketAddr,
    pub agent: SocketAddr,
    pub journal: PathBuf,
    pub proc: Option<Proc>,
    log: PathBuf,
}

impl Node {
    pub fn start(dir: &TempDir, name: &str) -> Node {
        on_free_ports(&format!("node {name}"), || {
            Node::try_start_at(dir, name, free_addr(), free_addr(), "1.0.0")
        })
    }

    /// A node on given addresses reporting `version`.
    pub fn start_at(
        dir: &TempDir,
        name: &str,
        app: SocketAddr,
        agent: SocketAddr,
        version: &str,
    ) -> Node {
        Node::try_start_at(dir, name, app, agent, version)
            .unwrap_or_else(|| panic!("node {name}: {app} or {agent} is taken"))
    }

    /// `None`: one of the addresses is taken.
    fn try_start_at(
        dir: &TempDir,
        name: &str,
        app: SocketAddr,
        agent: SocketAddr,
        version: &str,
    ) -> Option<Node> {
        let tag = format!("{name}-{}", app.ip());
        let mut n = Node {
            name: name.to_string(),
            app,
            agent,
            version: version.to_string(),
            journal: dir.path().join(format!("journal-{tag}.txt")),
            proc: None,
            log: dir.path().join(format!("node-{tag}.log")),
        };
        n.try_restart().then_some(n)
    }

    /// Starts (again) on the same ports.
    pub fn restart(&mut self) {
        assert!(
            self.try_restart(),
            "node {}: {} or {} is taken",
            self.name,
            self.app,
            self.agent
        );
    }

    /// False: one of its ports is taken.
    fn try_restart(&mut self) -> bool {
        let mut cmd = Command::new(bin("demo-node"));
        cmd.args(["--name", &self.name])
            .args(["--listen", &self.app.to_string()])
            .args(["--agent-listen", &self.agent.to_string()])
            .args(["--version", &self.version])
            .arg("--journal")
            .arg(&self.journal);
        let mut proc = Proc::spawn(&format!("node {}", self.name), cmd, Some(&self.log));
        let started = wait_started(&mut proc, &[self.app, self.agent], Duration::from_secs(10));
        self.proc = Some(proc);
        match started {
            Started::Up => true,
            Started::PortTaken => false,
            Started::Failed => panic!(
                "node {} did not open {} and {}; log:\n{}",
                self.name,
                self.app,
                self.agent,
                self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
            ),
        }
    }

    pub fn signal(&self, sig: &str) {
        self.proc.as_ref().expect("running").signal(sig);
    }

    /// kill -9, and wait until the process is gone.
    pub fn crash(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal("KILL");
            p.kill();
        }
    }

    pub fn journal(&self) -> Vec<String> {
        std::fs::read_to_string(&self.journal)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Settings a test may change; the rest is the demo's defaults.
#[derive(Clone)]
pub struct GwOpts {
    pub mode: &'static str,
    pub weights: [u32; 2],
    pub preempt: bool,
    pub hold_down: &'static str,
    pub https: bool,
    pub read_timeout: &'static str,
    /// Extra environment of the gateway process (NOTIFY_SOCKET...).
    pub env: Vec<(String, String)>,
    /// A read-only admin token (`admin.read_token_file`), if any.
    pub read_token: Option<&'static str>,
    /// More of the `listeners.https:` section (indented four spaces), such
    /// as `ocsp_response:` or `session_tickets:`.
    pub https_extra: String,
    /// More of the `admin:` section (indented two spaces), such as `tls:`.
    pub admin_extra: String,
    /// `server.grace_period`: how long a stopping gateway lets requests
    /// in flight finish (0s: tests that stop it want it gone at once).
    pub grace_period: &'static str,
    /// More top-level YAML (an `affinity:` section...).
    pub extra: String,
    /// The admin listener's address, when a test must know it before the
    /// gateway starts (the peer of a gateway pair); else a free port.
    pub admin: Option<SocketAddr>,
    /// `server.state_file: operator-state.json` (the operator's state kept
    /// across restarts).
    pub state_file: bool,
}

impl Default for GwOpts {
    fn default() -> Self {
        GwOpts {
            mode: "active-standby",
            weights: [100, 100],
            preempt: false,
            hold_down: "30s",
            https: false,
            read_timeout: "60s",
            env: Vec::new(),
            read_token: None,
            https_extra: String::new(),
            admin_extra: String::new(),
            grace_period: "0s",
            extra: String::new(),
            admin: None,
            state_file: false,
        }
    }
}

pub struct Gateway {
    pub admin: SocketAddr,
    pub token: String,
    pub audit: PathBuf,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub metrics: SocketAddr,
    pub config: PathBuf,
    /// The certificate the HTTPS listener started with, and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub proc: Proc,
    pub log: PathBuf,
    /// The nodes as the config names them: (name, app, agent).
    pub nodes: [(String, String, String); 2],
}

impl Gateway {
    pub fn start(dir: &TempDir, nodes: &[&Node; 2], o: &GwOpts) -> Gateway {
        let targets = [0, 1].map(|i| {
            (
                nodes[i].name.clone(),
                nodes[i].app.to_string(),
                nodes[i].agent.to_string(),
            )
        });
        Gateway::start_with(dir, targets, o, "")
    }

    /// Starts the gateway with nodes given as (name, address, agent)
    /// strings (host names allowed) and `extra` top-level YAML.
    pub fn start_with(
        dir: &TempDir,
        targets: [(String, String, String); 2],
        o: &GwOpts,
        extra: &str,
    ) -> Gateway {
        let token = "test-token-0123456789abcdef".to_string();
        let token_file = dir.path().join("admin.token");
        crate::write_secret(&token_file, &format!("{token}\n"));
        if let Some(t) = o.read_token {
            crate::write_secret(&dir.path().join("read.token"), t);
        }
        let (cert, key) = crate::write_dev_cert(
            &dir.path().join("tls"),
            &["localhost".to_string(), "127.0.0.1".to_string()],
        )
        .expect("dev cert");
        on_free_ports("gateway", || {
            let mut cmd = Command::new(bin("gateway"));
            let config = dir.path().join("gateway.yaml");
            cmd.arg("--config").arg(&config).envs(o.env.iter().cloned());
            let mut gw = Gateway {
                admin: o.admin.unwrap_or_else(free_addr),
                token: token.clone(),
                audit: dir.path().join("audit.log"),
                http: free_addr(),
                https: o.https.then(free_addr),
                metrics: free_addr(),
                config,
                cert: cert.clone(),
                key: key.clone(),
                // Replaced below once the config is written.
                proc: Proc::spawn("true", Command::new("true"), None),
                log: dir.path().join("gateway.log"),
                nodes: targets.clone(),
            };
            gw.write_config(o, extra);
            gw.proc = Proc::spawn("gateway", cmd, Some(&gw.log));
            let ports = [gw.http, gw.metrics, gw.admin];
            match wait_started(&mut gw.proc, &ports, Duration::from_secs(15)) {
                Started::Up => Some(gw),
                Started::PortTaken => None,
                Started::Failed => panic!(
                    "gateway did not open {ports:?}; log:\n{}",
                    gw.proc.log_text()
                ),
            }
        })
    }

    /// Writes the config file for `o` with the gateway's ports; `extra` is
    /// appended as more top-level YAML.
    pub fn write_config(&self, o: &GwOpts, extra: &str) {
        self.write_config_with_cert(o, extra, &self.cert, &self.key)
    }

    pub fn write_config_with_cert(
        &self,
        o: &GwOpts,
        extra: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) {
        let https_yaml = self
            .https
            .map(|a| {
                format!(
                    "  https:\n    address: {a}\n    certificate: {}\n    key: {}\n{}",
                    cert.display(),
                    key.display(),
                    o.https_extra
                )
            })
            .unwrap_or_default();
        let node_yaml: String = self
            .nodes
            .iter()
            .zip(o.weights)
            .map(|((name, app, agent), w)| {
                format!(
                    "  - name: {name}\n    address: {app}\n    agent: {agent}\n    weight: {w}\n"
                )
            })
            .collect();
        let yaml = format!(
            "listeners:\n  http: {http}\n{https_yaml}  metrics: {metrics}\n  admin: {admin}\n\
admin:\n  token_file: admin.token\n  audit_log: audit.log\n{read_token}{admin_extra}\
mode: {mode}\nprimary: {primary}\nnodes:\n{node_yaml}\
failback:\n  preempt: {preempt}\n  hold_down: {hold}\n\
timeouts:\n  read: {read}\n\
server:\n  threads: 2\n  grace_period: {grace}\n  graceful_shutdown_timeout: 1s\n  pid_file: gateway.pid\n  upgrade_socket: upgrade.sock\n{state_file}{extra}{more}",
            state_file = if o.state_file {
                "  state_file: operator-state.json\n"
            } else {
                ""
            },
            more = o.extra,
            http = self.http,
            grace = o.grace_period,
            metrics = self.metrics,
            admin = self.admin,
            mode = o.mode,
            admin_extra = o.admin_extra,
            read_token = o
                .read_token
                .map(|_| "  read_token_file: read.token\n")
                .unwrap_or_default(),
            primary = self.nodes[0].0,
            preempt = o.preempt,
            hold = o.hold_down,
            read = o.read_timeout,
        );
        // Write then rename, as an operator's tooling would.
        let tmp = self.config.with_extension("yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// A call to the admin API with the token.
    pub async fn admin_call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let client = reqwest::Client::new();
        let url = format!("http://{}{path}", self.admin);
        let mut req = client
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("admin API answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Polls `GET /v1/status` every 20 ms until `done` holds or `timeout`
    /// passes; the last status seen (the caller asserts on it).
    pub async fn wait_status(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = Instant::now() + timeout;
        loop {
            let (_, s) = self.admin_call("GET", "/v1/status", None).await;
            if done(&s) || Instant::now() >= end {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one sample, such as `twinport_node_up{node="a"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        parse_sample(&text, sample)
    }

    /// Waits until `sample` has value `want`.
    pub async fn wait_metric(&self, sample: &str, want: f64, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.metric(sample).await == Some(want) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// Finds `sample` (name with its labels in the exposition's order) in
/// Prometheus text.
/// Node `name` in a gateway's `GET /v1/status` answer.
pub fn node_status<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no node {name} in the status: {status}"))
}

pub fn parse_sample(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == sample).then(|| v.parse().ok())?
    })
}

/// The outcome of one request in a load loop.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    pub status: u16,
    pub node: String,
    /// `X-Twinport-Version` of the answer (which demo node, when two share a name).
    pub version: String,
    pub latency: Duration,
    pub error: String,
    pub at: Instant,
}

/// Runs `workers` loops of requests to `url` until `duration` has passed
/// (each loop also stops after `max_per_worker` requests), collecting every
/// outcome. Each worker has its own keep-alive connection.
pub async fn load(
    url: String,
    workers: usize,
    duration: Duration,
    max_per_worker: usize,
) -> Vec<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    run_workers(
        workers,
        duration,
        max_per_worker,
        stop,
        false,
        move |c, _, _| c.get(&url),
    )
    .await
}

/// Runs `workers` loops of requests made by `make(client, worker, i)` until
/// `duration` has passed, `stop` is set, or each loop has sent
/// `max_per_worker`. Each worker has its own client; with
/// `fresh_connections`, odd workers open a new connection per request.
pub async fn run_workers<F>(
    workers: usize,
    duration: Duration,
    max_per_worker: usize,
    stop: Arc<AtomicBool>,
    fresh_connections: bool,
    make: F,
) -> Vec<Outcome>
where
    F: Fn(&reqwest::Client, usize, usize) -> reqwest::RequestBuilder + Clone + Send + 'static,
{
    let end = Instant::now() + duration;
    let mut handles = Vec::new();
    for w in 0..workers {
        let (stop, make) = (stop.clone(), make.clone());
        handles.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(if fresh_connections && w % 2 == 1 {
                    0
                } else {
                    1
                })
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let mut out = Vec::new();
            while Instant::now() < end
                && out.len() < max_per_worker
                && !stop.load(Ordering::Relaxed)
            {
                out.push(send(make(&client, w, out.len())).await);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("worker"));
    }
    all
}

pub fn summary(outcomes: &[Outcome]) -> String {
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.ok).take(5).collect();
    let max = outcomes.iter().map(|o| o.latency).max().unwrap_or_default();
    format!(
        "{} requests, {} failed, max latency {:?}; first failures: {:?}",
        outcomes.len(),
        outcomes.iter().filter(|o| !o.ok).count(),
        max,
        failed
    )
}

/// Like [`load`], but every other request is a `POST /record?id=...`
/// (recorded in the node's journal), so that GET and POST are mixed.
pub async fn load_mixed(
    base: String,
    workers: usize,
    duration: Duration,
    max_per_worker: usize,
) -> Vec<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    load_mixed_until(base, workers, duration, max_per_worker, stop, false).await
}

/// [`load_mixed`] that also stops when `stop` is set.
pub async fn load_mixed_until(
    base: String,
    workers: usize,
    duration: Duration,
    max_per_worker: usize,
    stop: Arc<AtomicBool>,
    fresh_connections: bool,
) -> Vec<Outcome> {
    run_workers(
        workers,
        duration,
        max_per_worker,
        stop,
        fresh_connections,
        move |c, w, i| {
            if i % 2 == 0 {
                c.get(format!("{base}/whoami"))
            } else {
                c.post(format!("{base}/record?id=w{w}-{i}")).body("x")
            }
        },
    )
    .await
}

/// Sends one request and records how it went.
pub async fn send(req: reqwest::RequestBuilder) -> Outcome {
    let at = Instant::now();
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let header = |k: &str| {
                resp.headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let (node, version) = (header("x-twinport-node"), header("x-twinport-version"));
            let body = resp.bytes().await;
            Outcome {
                ok: status == 200 && body.is_ok(),
                status,
                node,
                version,
                latency: at.elapsed(),
                error: body.err().map(|e| format!("{e:?}")).unwrap_or_default(),
                at,
            }
        }
        Err(e) => Outcome {
            ok: false,
            status: 0,
            node: String::new(),
            version: String::new(),
            latency: at.elapsed(),
            error: format!("{e:?}"),
            at,
        },
    }
}
