//! The real `ticketing` binary on an ephemeral loopback port, on SQLite or
//! on a fresh PostgreSQL database of its own.

use crate::{bin, free_addr, on_free_ports, wait_started, Proc, Started, TempDir};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const KIOSK: &str = "kiosk-token-0123456789abcdef";
pub const DESK: &str = "desk-token-0123456789abcdef";
pub const MANAGER: &str = "manager-token-0123456789abcdef";
pub const OTHER_KIOSK: &str = "other-kiosk-token-0123456789";
/// The PostgreSQL server the tests create their databases on:
/// `TWINPORT_POSTGRES` (scripts/test sets it to a private server where the
/// machine has none), else the machine's at 127.0.0.1:5432.
pub fn postgres_server() -> String {
    std::env::var("TWINPORT_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh PostgreSQL database for one test, `twinport_{tag}_{pid}`; those
/// of earlier test processes that are gone are dropped first. A test that
/// needs PostgreSQL fails when no server answers, unless
/// `TWINPORT_SKIP_POSTGRES=1` is set explicitly: then `None`, said loudly.
pub async fn postgres_db(tag: &str) -> Option<String> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let server = postgres_server();
    let mut admin = match sqlx::AnyConnection::connect(&server).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("TWINPORT_SKIP_POSTGRES").as_deref() != Ok("1") {
                panic!(
                    "PostgreSQL at {server} is needed and does not answer: {e} \
                     (scripts/test starts one; set TWINPORT_POSTGRES to a server, or \
                     TWINPORT_SKIP_POSTGRES=1 to skip these tests knowingly)"
                );
            }
            eprintln!(
                "\n!!! SKIPPED (TWINPORT_SKIP_POSTGRES=1): no PostgreSQL at {server} ({e}) !!!\n"
            );
            return None;
        }
    };
    let old = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'twinport\\_%'")
        .fetch_all(&mut admin)
        .await
        .unwrap_or_default();
    for row in old {
        use sqlx::Row;
        let name: String = row.get("datname");
        let pid = name.rsplit('_').next().unwrap_or("");
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(&mut admin)
                .await;
        }
    }
    let name = format!("twinport_{tag}_{}", std::process::id());
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

/// Writes the three tokens of branch `centrum` and the kiosk token of
/// branch `other` into `dir`.
pub fn write_tokens(dir: &TempDir) {
    for (f, t) in [
        ("kiosk", KIOSK),
        ("desk", DESK),
        ("manager", MANAGER),
        ("other-kiosk", OTHER_KIOSK),
        ("other-desk", "other-desk-token-0123456789"),
        ("other-manager", "other-manager-token-0123456789"),
    ] {
        crate::write_secret(&dir.path().join(format!("{f}.token")), t);
    }
}

pub fn config(node: &str, listen: SocketAddr, metrics: SocketAddr, database: &str) -> String {
    format!(
        "node: {node}
listen: {listen}
metrics_listen: {metrics}
database: {database}
public_url: http://{listen}
# Load tests play many kiosks from one address: no per-kiosk limit here.
kiosk_rate_limit: 0
max_connections: 20
branches:
  - id: centrum
    name: Warszawa Centrum
    time_zone: Europe/Warsaw
    booking_window: 15m
    tokens: {{ kiosk: kiosk.token, desk: desk.token, manager: manager.token }}
    services:
      - {{ prefix: A, name: {{ pl: Dowody osobiste, en: ID cards }}, target_wait: 10m, max_wait: 30m, service_time: 5m }}
      - {{ prefix: B, name: {{ pl: Paszporty, en: Passports }}, target_wait: 15m }}
      - {{ prefix: C, name: {{ pl: Rejestracja pojazdów, en: Vehicles }} }}
    desks:
      - {{ id: \"1\", services: [A, B] }}
      - {{ id: \"2\", services: [B, C] }}
    priority_groups:
      - {{ id: disabled, name: {{ pl: Osoba z niepełnosprawnością, en: Disabled person }}, boost: 15m }}
  - id: other
    name: Kraków
    tokens: {{ kiosk: other-kiosk.token, desk: other-desk.token, manager: other-manager.token }}
    services:
      - {{ prefix: A, name: {{ pl: Dowody, en: ID cards }} }}
    desks:
      - {{ id: \"1\", services: [A] }}
"
    )
}

pub struct Ticketing {
    pub addr: SocketAddr,
    /// Its metrics listener.
    pub metrics: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
    pub proc: Proc,
}

impl Ticketing {
    /// Starts an instance named `node` on `database` (default: SQLite in `dir`).
    pub fn start(dir: &TempDir, node: &str, database: Option<&str>) -> Ticketing {
        Ticketing::start_with_env(dir, node, database, &[])
    }

    /// [`Ticketing::start`] with extra environment for the process.
    pub fn start_with_env(
        dir: &TempDir,
        node: &str,
        database: Option<&str>,
        env: &[(String, String)],
    ) -> Ticketing {
        Ticketing::start_full(dir, node, database, env, &|yaml| yaml)
    }

    /// [`Ticketing::start`] with its config text changed by `edit`.
    pub fn start_edited(dir: &TempDir, node: &str, edit: &dyn Fn(String) -> String) -> Ticketing {
        Ticketing::start_full(dir, node, None, &[], edit)
    }

    fn start_full(
        dir: &TempDir,
        node: &str,
        database: Option<&str>,
        env: &[(String, String)],
        edit: &dyn Fn(String) -> String,
    ) -> Ticketing {
        write_tokens(dir);
        on_free_ports(&format!("ticketing {node}"), || {
            let addr = free_addr();
            let metrics = free_addr();
            let cfg = dir.path().join(format!("ticketing-{node}.yaml"));
            let yaml = edit(config(
                node,
                addr,
                metrics,
                database.unwrap_or("sqlite://tickets.db"),
            ));
            // An edit may take the metrics listener out.
            let ports = if yaml.contains(&metrics.to_string()) {
                vec![addr, metrics]
            } else {
                vec![addr]
            };
            std::fs::write(&cfg, yaml).unwrap();
            let log = dir.path().join(format!("ticketing-{node}.log"));
            let mut cmd = Command::new(bin("ticketing"));
            cmd.arg("--config").arg(&cfg).envs(env.iter().cloned());
            let mut proc = Proc::spawn(&format!("ticketing {node}"), cmd, Some(&log));
            match wait_started(&mut proc, &ports, Duration::from_secs(20)) {
                Started::Up => Some(Ticketing {
                    addr,
                    metrics,
                    config: cfg,
                    log,
                    proc,
                }),
                Started::PortTaken => None,
                Started::Failed => panic!("ticketing did not open {addr}: {}", proc.log_text()),
            }
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What its metrics listener shows.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .expect("the metrics listener answers")
            .text()
            .await
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One call: status and JSON body.
pub async fn call(
    c: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut r = c.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.expect("ticketing answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}
