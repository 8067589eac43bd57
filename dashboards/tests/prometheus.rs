//! A real Prometheus (Debian's package) scrapes the real appliance — the
//! gateway with HTTPS, two node-agents with their apps, and a ticketing
//! instance — through a short scenario: traffic, a few tickets and desk
//! calls, a config reload, failed and good TLS handshakes, a failover, and
//! an upgrade that is rolled back. Then, through Prometheus' HTTP API:
//! every expression of every dashboard panel and variable, every recording
//! rule and every part of every alert returns data; every annotation
//! returned data at some time of the scenario; the failover and rollback
//! alerts fire. The metric names of dashboards and rules are checked
//! against what the binaries really export.

use devtools::harness::agent as agents;
use devtools::harness::ticketing as tk;

use agents::gw::GwOpts;
use agents::{appliance_with, release, wait_gateway_health, UPGRADE};
use devtools::{free_addr, Proc};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use twinport_dashboards::{all_queries, lint_all, MetricNames, QueryKind};

fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Prometheus {
    addr: std::net::SocketAddr,
    _proc: Proc,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping every second and evaluating the rules
    /// every second.
    async fn start(dir: &Path, jobs: &[(&str, Vec<String>)]) -> Prometheus {
        let addr = free_addr();
        let d = dashboards_dir();
        let scrape: String = jobs
            .iter()
            .map(|(job, targets)| {
                format!(
                    "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                    targets.join(", ")
                )
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
rule_files:\n  - {}\n  - {}\nscrape_configs:\n{scrape}",
            d.join("rules/twinport.yml").display(),
            d.join("alerts/twinport.yml").display(),
        );
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let log = dir.join("prometheus.log");
        let which = Command::new("prometheus").arg("--version").output();
        assert!(
            which.is_ok(),
            "Prometheus is not installed: this test needs Debian's `prometheus` package (scripts/test installs it)"
        );
        let proc = Proc::spawn("prometheus", cmd, Some(&log));
        assert!(
            devtools::wait_for_port(addr, Duration::from_secs(30)),
            "prometheus did not open {addr}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let client = reqwest::Client::new();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client
                .get(format!("http://{addr}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < end,
                "prometheus not ready: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Prometheus {
            addr,
            _proc: proc,
            client,
        }
    }

    async fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let r = self
            .client
            .get(format!("http://{}/api/v1/{path}", self.addr))
            .query(params)
            .send()
            .await
            .expect("prometheus answers");
        let v: Value = r.json().await.expect("JSON");
        assert_eq!(v["status"], "success", "{path} {params:?}: {v}");
        v
    }

    /// The series an instant query returns now.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let v = self.api("query", &[("query", expr.to_string())]).await;
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The series a range query returns from `start` (Unix s) to now.
    async fn query_range(&self, expr: &str, start: f64) -> Vec<Value> {
        let now = unix_now();
        let v = self
            .api(
                "query_range",
                &[
                    ("query", expr.to_string()),
                    ("start", format!("{start:.3}")),
                    ("end", format!("{now:.3}")),
                    ("step", "1".into()),
                ],
            )
            .await;
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    async fn wait(&self, expr: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if !self.query(expr).await.is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn metrics_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .and_then(|r| r.error_for_status())
        .expect("metrics answer")
        .text()
        .await
        .unwrap()
}

/// What `promtool check metrics` finds wrong in `text` (empty: nothing).
fn promtool_check_metrics(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_and_alert_expression_returns_data_from_the_real_appliance() {
    // A gateway pair (plain HTTP between the two on loopback): the pair's
    // series exist on both.
    let gw2_dir = devtools::TempDir::new("dash-prom-gw2");
    let token = gw2_dir.path().join("pair.token");
    devtools::write_secret(&token, "dash-pair-token-0123456789abcdef");
    let admins = [free_addr(), free_addr()];
    let paired = |i: usize| {
        GwOpts {
        https: i == 0,
        admin: Some(admins[i]),
        state_file: true,
        extra: format!(
            "pair:\n  name: gw{}\n  peer: http://{}\n  token_file: {}\n  sync_interval: 200ms\n  start_timeout: 1s\n",
            i + 1,
            admins[1 - i],
            token.display()
        ),
        ..GwOpts::default()
    }
    };
    let (dir, a, b, gw) = appliance_with("dash-prom", UPGRADE, &paired(0)).await;
    let gw2 = agents::gw::Gateway::start_with(&gw2_dir, gw.nodes.clone(), &paired(1), "");
    // What keepalived's notify hooks would say.
    for (g, state) in [(&gw, "MASTER"), (&gw2, "BACKUP")] {
        let (code, v) = g
            .admin_call(
                "POST",
                "/v1/pair/vrrp",
                Some(serde_json::json!({ "state": state })),
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }
    let ticketing = tk::Ticketing::start(&dir, "a", None);
    let prom = Prometheus::start(
        dir.path(),
        &[
            (
                "twinport-gateway",
                vec![gw.metrics.to_string(), gw2.metrics.to_string()],
            ),
            (
                "twinport-agent",
                vec![a.ready.to_string(), b.ready.to_string()],
            ),
            ("twinport-ticketing", vec![ticketing.metrics.to_string()]),
        ],
    )
    .await;
    assert!(
        prom.wait(
            "count(up{job=~\"twinport-.*\"} == 1) == 5",
            Duration::from_secs(30)
        )
        .await,
        "Prometheus scrapes all five targets"
    );
    // The failover counter has been scraped at 0 before the failover.
    assert!(
        prom.wait("twinport_failovers_total", Duration::from_secs(10))
            .await
    );
    let started = unix_now() - 5.0;

    // Traffic through the gateway for the whole scenario.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(agents::gw::load_mixed_until(
        gw.url(""),
        2,
        Duration::from_secs(90),
        20_000,
        stop.clone(),
        false,
    ));

    // TLS: good handshakes, and one that fails (plain text on the TLS port).
    let https = gw.https.expect("https listener");
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0) // a handshake per request
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = tls
            .get(format!("https://{https}/whoami"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(https).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    }

    let started_tls = gw
        .metric("twinport_tls_handshakes_total{stage=\"started\"}")
        .await
        .unwrap();
    let completed_tls = gw
        .metric("twinport_tls_handshakes_total{stage=\"completed\"}")
        .await
        .unwrap();
    assert!(
        completed_tls >= 5.0 && started_tls >= completed_tls + 1.0,
        "handshakes started {started_tls}, completed {completed_tls}"
    );
    let expiry = gw
        .metric("twinport_tls_certificate_expiry_timestamp_seconds{listener=\"https\"}")
        .await
        .unwrap();
    assert!(expiry > unix_now(), "certificate expiry {expiry}");

    // Tickets: four issued, desk 1 opens, calls two, one a no-show.
    let c = reqwest::Client::new();
    let branch = ticketing.url("/api/v1/branches/centrum");
    for (i, service) in ["A", "B", "A", "C"].iter().enumerate() {
        let (s, v) = tk::call(
            &c,
            "POST",
            &format!("{branch}/tickets"),
            Some(tk::KIOSK),
            Some(&format!("dash-{i}")),
            Some(&format!(r#"{{"service":"{service}"}}"#)),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    for action in ["open", "call-next", "finish", "call-next", "no-show"] {
        let (s, v) = tk::call(
            &c,
            "POST",
            &format!("{branch}/desks/1/{action}"),
            Some(tk::DESK),
            None,
            None,
        )
        .await;
        assert!(s < 300, "desk {action}: {s} {v}");
    }

    // A config reload.
    let (s, v) = gw.admin_call("POST", "/v1/config/reload", None).await;
    assert_eq!(s, 200, "{v}");

    // A failover: the primary's readiness fails (either twin may have
    // become primary, whichever was ready first), the gateway moves
    // traffic to its twin.
    let (_, status) = gw.admin_call("GET", "/v1/status", None).await;
    let (primary, other) = if status["primary"] == "a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(status["primary"], primary.name.as_str(), "{status}");
    std::fs::write(&primary.fail_marker, "").unwrap();
    assert!(wait_gateway_health(&gw, &primary.name, "down", Duration::from_secs(10)).await);
    std::fs::remove_file(&primary.fail_marker).unwrap();
    assert!(wait_gateway_health(&gw, &primary.name, "up", Duration::from_secs(10)).await);
    let (_, status) = gw.admin_call("GET", "/v1/status", None).await;
    assert_eq!(status["primary"], other.name.as_str(), "{status}");

    // An upgrade of the failed node (now the standby) to a release that
    // never gets ready: rolled back.
    let bad = release(&dir, "2.0.0", false);
    let body = serde_json::json!({"release": bad, "version": "2.0.0"}).to_string();
    let (s, v) = primary.call("POST", "/v1/upgrade", Some(&body)).await;
    assert_eq!(s, 202, "{v}");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let s = primary.status().await;
        if s["upgrade"]["result"] == "rolled_back" {
            break;
        }
        assert!(Instant::now() < end, "no rollback: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The alerts this scenario must raise.
    for alert in ["TwinportFailover", "TwinportUpgradeRolledBack"] {
        let q = format!("ALERTS{{alertname=\"{alert}\",alertstate=\"firing\"}}");
        assert!(
            prom.wait(&q, Duration::from_secs(20)).await,
            "{alert} did not fire; alerts: {:?}; failovers: {:?}; role changes: {:?}; gateway log:\n{}",
            prom.query("ALERTS").await,
            prom.query("twinport_failovers_total").await,
            prom.query("twinport_role_changes_total > 0").await,
            gw.log_text()
        );
    }
    // Give the 1 s scrapes and rule evaluations time to see the end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failover = prom
        .query("ALERTS{alertname=\"TwinportFailover\",alertstate=\"firing\"}")
        .await;
    assert_eq!(
        failover[0]["metric"]["reason"], "health_check",
        "{failover:?}"
    );

    // Every query returns data.
    let queries = all_queries(&dashboards_dir()).unwrap();
    let mut empty = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for q in &queries {
        let expr = twinport_dashboards::promql::substitute(&q.expr, "1m");
        let result = match q.kind {
            QueryKind::Annotation => prom.query_range(&expr, started).await,
            _ => prom.query(&expr).await,
        };
        *counts.entry(format!("{:?}", q.kind)).or_default() += 1;
        if result.is_empty() {
            empty.push(format!("{}: {expr}", q.origin));
        }
    }
    println!("queries checked against Prometheus: {counts:?}");
    assert!(
        empty.is_empty(),
        "{} of {} queries returned no data:\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n")
    );

    // Metric names: exactly what the binaries export.
    let mut names = MetricNames::default();
    for url in [
        format!("http://{}/metrics", gw.metrics),
        format!("http://{}/metrics", a.ready),
        format!("http://{}/metrics", ticketing.metrics),
    ] {
        let text = metrics_text(&url).await;
        // Prometheus' own lint of the exposition (names, HELP, units).
        let lint = promtool_check_metrics(&text);
        assert!(lint.is_empty(), "promtool check metrics on {url}:\n{lint}");
        names.add_exposition(&text);
    }
    let repo = dashboards_dir().join("..");
    let problems = lint_all(&dashboards_dir(), &repo, &names).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    println!("load: {}", agents::gw::summary(&outcomes));
}
