//! `twinctl`: the operator's command line over the gateway's admin API.
//!
//! ```text
//! twinctl status [--json]          both nodes, roles, states, recent transitions
//! twinctl drain NODE               no new requests; in-flight ones finish
//! twinctl drain --soft NODE        no new sessions; the node's sessions finish
//!                                  there (session affinity), then a drain
//! twinctl undrain NODE             back into service
//! twinctl maintenance NODE         no traffic, no failover onto it
//! twinctl switchover NODE          planned move of the primary role
//! twinctl weight NODE N|config     an operator's weight (active-active share)
//! twinctl reload                   re-read and apply the gateway's config file
//! twinctl rolling-upgrade --release PATH --version V --agent a=URL --agent b=URL
//!                                  upgrade both twins one at a time, under traffic
//! ```
//!
//! The admin address comes from `--admin` or `TWINPORT_ADMIN` (default
//! `http://127.0.0.1:9180`), the token from `--token-file`,
//! `TWINPORT_TOKEN_FILE` or `TWINPORT_TOKEN`. A gateway pair: `--admin`
//! twice (or comma-separated), or `--gateways FILE` listing the URLs;
//! `status` shows both gateways and whether they agree, and changes go to
//! each, reported per gateway (see `pair.rs`).
//!
//! Exit codes: 0 done; 1 refused by the gateway (409, 422, ...); 2 bad
//! usage; 3 gateway unreachable; 4 unauthorized; 5 unknown node.
#![forbid(unsafe_code)]

mod pair;
mod rolling;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "twinctl",
    version,
    about = "Operate a Twinport gateway through its admin API"
)]
struct Cli {
    /// Admin API base URL; twice (or comma-separated) for a gateway pair.
    #[arg(
        long,
        env = "TWINPORT_ADMIN",
        default_value = "http://127.0.0.1:9180",
        value_delimiter = ',',
        global = true
    )]
    admin: Vec<String>,
    /// A file listing the gateways' admin URLs, one per line (`#` starts a
    /// comment); instead of `--admin`.
    #[arg(long, env = "TWINPORT_GATEWAYS", global = true)]
    gateways: Option<std::path::PathBuf>,
    /// File holding the admin bearer token.
    #[arg(long, env = "TWINPORT_TOKEN_FILE", global = true)]
    token_file: Option<std::path::PathBuf>,
    /// PEM CA certificate to trust for an `https://` admin URL.
    #[arg(long, env = "TWINPORT_CA_CERT", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// PEM client certificate for an admin API with mutual TLS (with
    /// `--client-key`).
    #[arg(
        long,
        env = "TWINPORT_CLIENT_CERT",
        global = true,
        requires = "client_key"
    )]
    client_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(
        long,
        env = "TWINPORT_CLIENT_KEY",
        global = true,
        requires = "client_cert"
    )]
    client_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show both nodes, their roles and states, and recent transitions.
    Status {
        /// Print the raw JSON status.
        #[arg(long)]
        json: bool,
    },
    /// Stop sending new requests to NODE; requests in flight finish.
    Drain {
        node: String,
        /// With session affinity: no new sessions go to NODE, but requests
        /// of sessions bound to it still do, until they stop coming or the
        /// gateway's affinity.drain_timeout passes; then a full drain.
        #[arg(long)]
        soft: bool,
    },
    /// Put NODE back into service.
    Undrain { node: String },
    /// No traffic to NODE and no failover onto it.
    Maintenance { node: String },
    /// Move the primary role to NODE (refused if NODE is not healthy).
    Switchover {
        node: String,
        /// With a gateway pair whose other gateway cannot be reached:
        /// switch over on this one anyway (the other is down for good).
        #[arg(long)]
        force: bool,
    },
    /// Set NODE's weight (1-1000; `config`: the configured weight again):
    /// in active-active, its share of new requests.
    Weight { node: String, weight: String },
    /// Re-read the gateway's configuration file and apply it.
    Reload,
    /// Upgrade both twins one at a time through their node-agents, under
    /// traffic: move traffic away, drain, upgrade, verify, undrain.
    RollingUpgrade(rolling::Args),
}

/// How a call ended, as an exit code.
pub enum Failure {
    Refused(String),
    Unreachable(String),
    Unauthorized,
    UnknownNode(String),
    Usage(String),
}

impl Failure {
    fn exit(self) -> ExitCode {
        let (code, msg) = match self {
            Failure::Refused(m) => (1, format!("refused: {m}")),
            Failure::Usage(m) => (2, m),
            Failure::Unreachable(m) => (3, format!("cannot reach the gateway's admin API: {m}")),
            Failure::Unauthorized => (
                4,
                "unauthorized: check the token (--token-file or TWINPORT_TOKEN)".into(),
            ),
            Failure::UnknownNode(m) => (5, m),
        };
        eprintln!("twinctl: {msg}");
        ExitCode::from(code)
    }
}

fn read_token_file(path: &std::path::Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| {
            Failure::Usage(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })
}

fn token(cli: &Cli) -> Result<String, Failure> {
    if let Some(path) = &cli.token_file {
        return read_token_file(path);
    }
    std::env::var("TWINPORT_TOKEN").map_err(|_| {
        Failure::Usage(
            "no token: pass --token-file or set TWINPORT_TOKEN_FILE or TWINPORT_TOKEN".into(),
        )
    })
}

/// One JSON API with a bearer token: the gateway's admin API or a
/// node-agent's control API.
pub struct Api {
    base: String,
    token: String,
    client: reqwest::blocking::Client,
}

impl Api {
    fn new(base: &str, token: String) -> Result<Api, Failure> {
        Api::with_client(base, token, reqwest::blocking::Client::builder())
    }

    fn with_client(
        base: &str,
        token: String,
        builder: reqwest::blocking::ClientBuilder,
    ) -> Result<Api, Failure> {
        let client = builder
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            client,
        })
    }

    /// The admin API at `url`, over HTTPS with the CA and client
    /// certificate given (mutual TLS) when it is `https://`.
    fn gateway(cli: &Cli, url: &str) -> Result<Api, Failure> {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", p.display())))
        };
        let mut builder = reqwest::blocking::Client::builder();
        if let Some(ca) = &cli.ca_cert {
            let cert = reqwest::Certificate::from_pem(&read(ca)?)
                .map_err(|e| Failure::Usage(format!("{}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        if let (Some(cert), Some(key)) = (&cli.client_cert, &cli.client_key) {
            let mut pem = read(cert)?;
            pem.extend(read(key)?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| Failure::Usage(format!("{}: {e}", cert.display())))?;
            builder = builder.identity(id);
        }
        Api::with_client(url, token(cli)?, builder)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.client.get(&url),
            _ => self.client.post(&url),
        }
        .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .map_err(|e| Failure::Unreachable(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let value: Value = resp.json().unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(value),
            401 | 403 => Err(Failure::Unauthorized),
            404 => Err(Failure::UnknownNode(message(&value))),
            _ => Err(Failure::Refused(format!("{status}: {}", message(&value)))),
        }
    }

    fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        self.call("POST", path, body)
    }
}

/// The message of an error answer, with a config file's errors listed.
fn message(value: &Value) -> String {
    let m = value["message"]
        .as_str()
        .unwrap_or("no details")
        .to_string();
    match value["errors"].as_array() {
        Some(errs) if !errs.is_empty() => errs
            .iter()
            .map(|e| {
                let line = e["line"]
                    .as_u64()
                    .map(|l| format!(" (line {l})"))
                    .unwrap_or_default();
                format!(
                    "\n  {}{line}: {}",
                    e["field"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .fold(
                format!("{}:", value["file"].as_str().unwrap_or("config")),
                |a, b| a + &b,
            ),
        _ => m,
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Rows in aligned columns, two spaces apart, one line each.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The status as a table an operator reads at 3 a.m.
fn render_status(v: &Value) -> String {
    let mut out = format!(
        "mode {}   primary {}   config generation {} ({})\n\n",
        s(&v["mode"]),
        s(&v["primary"]),
        s(&v["config_generation"]),
        s(&v["config_file"])
    );
    let affinity = &v["affinity"];
    let sticky = !affinity.is_null() && affinity["mode"] != "none";
    if sticky {
        out.push_str(&format!(
            "affinity {} (cookie {}): {}\n\n",
            s(&affinity["mode"]),
            s(&affinity["cookie"]),
            s(&affinity["note"])
        ));
    }
    let header = [
        "NODE",
        "ROLE",
        "HEALTH",
        "STATE",
        "ADMIN",
        "WEIGHT",
        "INFLIGHT",
        "SESSIONS",
        "VERSION",
        "LAST CHECK",
    ];
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for n in v["nodes"].as_array().into_iter().flatten() {
        let check = &n["last_check"];
        rows.push(vec![
            s(&n["name"]),
            s(&n["role"]),
            s(&n["health"]),
            if n["soft_drain"].is_null() {
                s(&n["state"])
            } else {
                format!(
                    "{} (soft until {})",
                    s(&n["state"]),
                    s(&n["soft_drain"]["until"])
                )
            },
            s(&n["admin"]),
            if n["operator_weight"].is_null() {
                format!("{}/{}", s(&n["effective_weight"]), s(&n["weight"]))
            } else {
                format!(
                    "{}/{} (operator; configured {})",
                    s(&n["effective_weight"]),
                    s(&n["operator_weight"]),
                    s(&n["weight"])
                )
            },
            s(&n["inflight"]),
            if sticky {
                s(&n["sessions"])
            } else {
                "-".into()
            },
            s(&n["version"]),
            if check.is_null() {
                "-".into()
            } else {
                format!("{} {}", s(&check["result"]), s(&check["detail"]))
            },
        ]);
    }
    out.push_str(&table(&rows));
    let recent: Vec<&Value> = v["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .take(8)
        .collect();
    if !recent.is_empty() {
        out.push_str("\nrecent transitions (newest first):\n");
        for t in recent {
            let node = match t["node"].as_str() {
                Some(n) => format!("node {n}"),
                None => "gateway".into(),
            };
            out.push_str(&format!(
                "  {}  {:<8} {:<28} {}\n",
                s(&t["at"]),
                node,
                s(&t["event"]),
                s(&t["reason"])
            ));
        }
    }
    out
}

fn run(cli: &Cli) -> Result<(), Failure> {
    if let Command::Weight { weight, .. } = &cli.command {
        if weight != "config" && weight.parse::<u32>().is_err() {
            return Err(Failure::Usage(format!(
                "weight `{weight}`: a number (1-1000) or `config`"
            )));
        }
    }
    let gateways = pair::gateways(cli)?;
    if let Command::RollingUpgrade(args) = &cli.command {
        return rolling::run(pair::serving(&gateways)?, args);
    }
    if gateways.len() > 1 {
        return pair::run(&gateways, &cli.command);
    }
    let gw = &gateways[0];
    match &cli.command {
        Command::Status { json } => {
            let v = gw.get("/v1/status")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render_status(&v));
            }
        }
        change => {
            let (method_path, body) = change_call(change);
            let v = gw.post(&method_path, body)?;
            println!("{}", describe_change(change, &v));
        }
    }
    Ok(())
}

/// The admin call that makes `change` (not `status`, not a rolling
/// upgrade): its path and body.
fn change_call(change: &Command) -> (String, Option<Value>) {
    match change {
        Command::Drain { node, soft: true } => (format!("/v1/nodes/{node}/drain?soft=true"), None),
        Command::Drain { node, .. } => (format!("/v1/nodes/{node}/drain"), None),
        Command::Undrain { node } => (format!("/v1/nodes/{node}/undrain"), None),
        Command::Maintenance { node } => (format!("/v1/nodes/{node}/maintenance"), None),
        Command::Switchover { node, force } => (
            "/v1/switchover".into(),
            Some(json!({ "to": node, "force": force })),
        ),
        Command::Weight { node, weight } => (
            format!("/v1/nodes/{node}/weight"),
            Some(json!({ "weight": weight.parse::<u32>().ok() })),
        ),
        Command::Reload => ("/v1/config/reload".into(), None),
        Command::Status { .. } | Command::RollingUpgrade(_) => {
            unreachable!("not a change")
        }
    }
}

/// What a gateway's answer to `change` means, in one line or a few.
fn describe_change(change: &Command, v: &Value) -> String {
    let mut out = match change {
        Command::Drain { node, soft: true } if v["soft_drain"] == true => {
            let n = v["status"]["nodes"]
                .as_array()
                .and_then(|ns| ns.iter().find(|x| x["name"] == node.as_str()))
                .cloned()
                .unwrap_or_default();
            format!(
                "node {node}: soft drain; {} sessions finish there, until {} at the latest",
                s(&n["sessions"]),
                s(&n["soft_drain"]["until"])
            )
        }
        Command::Drain { node, soft: true } => format!(
            "node {node}: admin state {} (no soft drain: session affinity is off, the node was drained already or is not up)",
            s(&v["admin"])
        ),
        Command::Drain { node, .. } | Command::Undrain { node } | Command::Maintenance { node } => {
            format!("node {node}: admin state {}", s(&v["admin"]))
        }
        Command::Switchover { .. } => format!("primary is now {}", s(&v["primary"])),
        Command::Weight { node, .. } => match v["weight"].as_u64() {
            Some(w) => format!("node {node}: weight {w} (set by the operator)"),
            None => format!("node {node}: the configured weight again"),
        },
        Command::Reload => {
            let mut t = format!("configuration generation {} in force", s(&v["generation"]));
            for n in v["needs_upgrade"].as_array().into_iter().flatten() {
                t.push_str(&format!("\n  not yet in force: {}", s(n)));
            }
            t
        }
        Command::Status { .. } | Command::RollingUpgrade(_) => String::new(),
    };
    let p = &v["pair"];
    if p["synced"] == true {
        out.push_str(&format!(
            " (the peer gateway {} holds it too)",
            s(&p["peer"])
        ));
    } else if p["synced"] == false {
        out.push_str(&format!(
            "\n  the peer gateway does not have it yet ({}); it is sent again until it does",
            s(&p["error"])
        ));
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_lines_up() {
        let v = json!({
            "mode": "active-standby", "primary": "a", "config_generation": 2, "config_file": "/etc/twinport/gateway.yaml",
            "nodes": [
                {"name": "a", "role": "primary", "health": "up", "state": "ready", "admin": "active",
                 "weight": 100, "effective_weight": 100, "inflight": 3, "version": "1.2.3",
                 "last_check": {"result": "ok", "detail": "ready, weight 100%"}},
                {"name": "b", "role": "standby", "health": "down", "state": "down", "admin": "active",
                 "weight": 100, "effective_weight": 100, "inflight": 0, "version": null, "last_check": null}
            ],
            "transitions": [{"at": "2026-11-24T18:00:00.000Z", "event": "health up → down", "reason": "2 readiness checks failed"}]
        });
        let t = render_status(&v);
        assert!(t.starts_with("mode active-standby   primary a   config generation 2"));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[2].starts_with("NODE  ROLE     HEALTH"), "{t}");
        assert!(lines[3].starts_with("a     primary  up      ready"), "{t}");
        assert!(lines[4].starts_with("b     standby  down    down"), "{t}");
        assert!(t.contains("health up → down"));
        assert!(!t.contains("affinity"), "{t}");
    }

    #[test]
    fn affinity_shows_sessions_and_soft_drains() {
        let v = json!({
            "mode": "active-active", "primary": null, "config_generation": 1, "config_file": "g.yaml",
            "affinity": {"mode": "cookie", "cookie": "TWINPORT_AFFINITY", "note": "sessions stay on their node"},
            "nodes": [
                {"name": "a", "role": "active", "health": "up", "state": "draining", "admin": "drain",
                 "weight": 100, "effective_weight": 100, "inflight": 1, "version": "1", "sessions": 42,
                 "soft_drain": {"by": "operator", "until": "2026-12-04T12:00:00Z"}},
                {"name": "b", "role": "active", "health": "up", "state": "ready", "admin": "active",
                 "weight": 100, "effective_weight": 100, "inflight": 0, "version": "1", "sessions": 7,
                 "soft_drain": null}
            ],
            "transitions": [{"at": "t", "node": "a", "event": "soft drain started", "reason": "operator"}]
        });
        let t = render_status(&v);
        assert!(
            t.contains("affinity cookie (cookie TWINPORT_AFFINITY): sessions stay on their node"),
            "{t}"
        );
        assert!(t.contains("SESSIONS"), "{t}");
        let a = t.lines().find(|l| l.starts_with("a ")).unwrap();
        assert!(
            a.contains("draining (soft until 2026-12-04T12:00:00Z)") && a.contains(" 42 "),
            "{a}"
        );
        assert!(t.contains("node a   soft drain started"), "{t}");
    }
}
