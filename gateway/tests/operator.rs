//! Operator control through the admin API, against the real binaries:
//! drain, switchover, reloads under load, authentication and the audit log,
//! certificate rotation, SIGHUP and the file watch.

use devtools::harness::gateway::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_lets_slow_requests_finish_and_sends_new_ones_to_the_twin() {
    let (dir, a, b) = twins("drain");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    // Ten slow requests (2 s) in flight on a.
    let client = reqwest::Client::new();
    let slow: Vec<_> = (0..10)
        .map(|_| tokio::spawn(client.get(gw.url("/slow?ms=2000")).send()))
        .collect();
    assert!(
        devtools::eventually(Duration::from_secs(2), || {
            futures_lite_status_inflight(&gw, "a") == 10
        }),
        "ten requests in flight on a"
    );
    let (code, body) = gw.admin_call("POST", "/v1/nodes/a/drain", None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(node_status(&body["status"], "a")["admin"], "drain");
    // New requests, GET and POST, all go to b while a finishes its work.
    let out = load_mixed(gw.url(""), 4, Duration::from_millis(2500), 10_000).await;
    assert!(out.iter().all(|o| o.ok), "{}", summary(&out));
    assert!(
        out.iter().all(|o| o.node == "b"),
        "a drained node got new requests"
    );
    assert!(a.journal().is_empty(), "no POST reached the drained node");
    for s in slow {
        let r = s.await.unwrap().expect("slow request answered");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-twinport-node"], "a");
        // The client's connection is closed after this response.
        assert_eq!(r.headers()["connection"], "close");
    }
    let (_, status) = gw.admin_call("GET", "/v1/status", None).await;
    assert_eq!(node_status(&status, "a")["inflight"], 0);
    assert_eq!(node_status(&status, "a")["state"], "draining");
    assert_eq!(status["primary"], "b");
    assert_eq!(
        gw.metric(r#"twinport_failovers_total{reason="operator"}"#)
            .await,
        None,
        "planned, not a failover"
    );
    // Undrain: a serves again as standby (non-preemptive).
    let (code, _) = gw.admin_call("POST", "/v1/nodes/a/undrain", None).await;
    assert_eq!(code, 200);
    let (_, status) = gw.admin_call("GET", "/v1/status", None).await;
    assert_eq!(node_status(&status, "a")["eligible"], true);
}

/// In-flight count of `node` from the status call (blocking helper for
/// `eventually`).
fn futures_lite_status_inflight(gw: &Gateway, node: &str) -> i64 {
    let url = format!("http://{}/v1/status", gw.admin);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("Authorization: Bearer {}", gw.token),
            &url,
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["name"] == node))
        .and_then(|n| n["inflight"].as_i64())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switchover_under_load_fails_no_request_and_is_refused_onto_a_sick_node() {
    let (dir, a, mut b) = twins("switch");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let load = tokio::spawn(load_mixed(
        gw.url(""),
        6,
        Duration::from_millis(2500),
        100_000,
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let switched_at = Instant::now();
    let (code, body) = gw
        .admin_call("POST", "/v1/switchover", Some(json!({"to": "b"})))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["primary"], "b");
    assert_eq!(
        gw.metric(r#"twinport_role_changes_total{reason="operator"}"#)
            .await,
        Some(1.0)
    );
    let out = load.await.unwrap();
    assert!(out.iter().all(|o| o.ok), "{}", summary(&out));
    assert!(out
        .iter()
        .filter(|o| o.at > switched_at + Duration::from_millis(20))
        .all(|o| o.node == "b"));
    // A request sent in the last moments before the call may reach the
    // gateway after the switch: the same 20 ms margin on both sides.
    assert!(out
        .iter()
        .filter(|o| o.at + Duration::from_millis(20) < switched_at)
        .all(|o| o.node == "a"));
    // Onto a node that is down: 409, nothing changes.
    gw.admin_call("POST", "/v1/switchover", Some(json!({"to": "a"})))
        .await;
    b.crash();
    assert!(
        gw.wait_metric(r#"twinport_node_up{node="b"}"#, 0.0, Duration::from_secs(2))
            .await
    );
    assert!(
        gw.wait_metric(
            r#"twinport_node_role{node="a",role="primary"}"#,
            1.0,
            Duration::from_secs(2)
        )
        .await
    );
    let (code, body) = gw
        .admin_call("POST", "/v1/switchover", Some(json!({"to": "b"})))
        .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"], "target_not_healthy");
    let (code, _) = gw
        .admin_call("POST", "/v1/switchover", Some(json!({"to": "zz"})))
        .await;
    assert_eq!(code, 404);
    let (code, _) = gw
        .admin_call("POST", "/v1/switchover", Some(json!({"too": "a"})))
        .await;
    assert_eq!(code, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_reloads_and_ten_invalid_files_under_load_fail_no_request() {
    let (dir, a, b) = twins("reloads");
    let one = GwOpts::default();
    let two = GwOpts {
        mode: "active-active",
        weights: [60, 40],
        read_timeout: "30s",
        ..GwOpts::default()
    };
    // The file watch would also see the changes; it is off from the start
    // so that every reload below is counted exactly once (switching it off
    // with the first write raced: the watch could see that write too).
    let no_watch = "watch_config: false\n";
    let targets = [&a, &b].map(|n| (n.name.clone(), n.app.to_string(), n.agent.to_string()));
    let gw = Gateway::start_with(&dir, targets, &one, no_watch);
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load_mixed_until(
        gw.url(""),
        4,
        Duration::from_secs(120),
        1_000_000,
        stop.clone(),
        false,
    ));
    let mut valid = 0;
    for i in 0..110 {
        if i % 11 == 5 {
            gw.write_config(&one, "health_check:\n  rise: 0\n");
            let (code, body) = gw.admin_call("POST", "/v1/config/reload", None).await;
            assert_eq!(code, 422, "{body}");
            assert_eq!(body["errors"][0]["field"], "health_check.rise", "{body}");
            assert!(body["errors"][0]["line"].as_u64().unwrap() > 1, "{body}");
            assert!(
                body["message"].as_str().unwrap().contains("gateway.yaml"),
                "{body}"
            );
        } else {
            gw.write_config(if i % 2 == 0 { &two } else { &one }, no_watch);
            let (code, body) = gw.admin_call("POST", "/v1/config/reload", None).await;
            assert_eq!(code, 200, "{body}");
            valid += 1;
            assert_eq!(body["generation"], 1 + valid, "{body}");
            assert_eq!(body["needs_upgrade"], json!([]));
        }
    }
    assert_eq!(valid, 100);
    stop.store(true, Ordering::Relaxed);
    let out = load.await.unwrap();
    assert!(
        out.len() > 200,
        "the load ran during the reloads: {}",
        out.len()
    );
    assert!(out.iter().all(|o| o.ok), "{}", summary(&out));
    assert_eq!(gw.metric("twinport_config_generation").await, Some(101.0));
    assert_eq!(
        gw.metric(r#"twinport_config_reloads_total{result="ok"}"#)
            .await,
        Some(100.0)
    );
    assert_eq!(
        gw.metric(r#"twinport_config_reloads_total{result="failed"}"#)
            .await,
        Some(10.0)
    );
    // A listener change is applied to the rest but reported.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let moved = text.replace(&format!("metrics: {}", gw.metrics), "metrics: 127.0.0.1:1");
    std::fs::write(&gw.config, moved).unwrap();
    let (code, body) = gw.admin_call("POST", "/v1/config/reload", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body["needs_upgrade"][0]
            .as_str()
            .unwrap()
            .starts_with("listeners.metrics"),
        "{body}"
    );
    assert!(
        gw.metric("twinport_config_generation").await.is_some(),
        "metrics still on the old socket"
    );
}

/// The gateway as it started: primary a, both nodes active, the first
/// config generation (refused calls must leave it so).
async fn assert_unchanged(gw: &Gateway) {
    let (code, status) = gw.admin_call("GET", "/v1/status", None).await;
    assert_eq!(code, 200);
    assert_eq!(status["primary"], "a");
    assert!(status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["admin"] == "active"));
    assert_eq!(status["config_generation"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_admin_call_without_the_token_gets_401_changes_nothing_and_is_audited() {
    let (dir, a, b) = twins("auth");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let client = reqwest::Client::new();
    let calls = [
        ("GET", "/v1/status"),
        ("POST", "/v1/nodes/a/drain"),
        ("POST", "/v1/nodes/a/undrain"),
        ("POST", "/v1/nodes/a/maintenance"),
        ("POST", "/v1/switchover"),
        ("POST", "/v1/config/reload"),
    ];
    for (method, path) in calls {
        for auth in [
            None,
            Some("Bearer wrong-token-0123456789"),
            Some("Basic dGVzdDp0ZXN0"),
        ] {
            let mut req = client
                .request(
                    method.parse().unwrap(),
                    format!("http://{}{path}", gw.admin),
                )
                .json(&json!({"to": "b"}));
            if let Some(h) = auth {
                req = req.header("Authorization", h);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
        }
    }
    assert_unchanged(&gw).await;
    // Every call is in the audit log, refused ones too.
    let audit = std::fs::read_to_string(&gw.audit).unwrap();
    let entries: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.iter().filter(|e| e["status"] == 401).count(), 18);
    let last = entries.last().unwrap();
    assert_eq!(last["action"], "GET /v1/status");
    assert_eq!(last["result"], "ok");
    assert!(last["caller"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_token_reads_the_status_and_changes_nothing() {
    let (dir, a, b) = twins("readonly");
    let reader = "read-only-token-0123456789abcdef";
    let opts = GwOpts {
        read_token: Some(reader),
        ..GwOpts::default()
    };
    let gw = Gateway::start(&dir, &[&a, &b], &opts);
    let client = reqwest::Client::new();
    let call = |method: &str, path: &str| {
        client
            .request(
                method.parse().unwrap(),
                format!("http://{}{path}", gw.admin),
            )
            .bearer_auth(reader)
            .json(&json!({"to": "b"}))
            .send()
    };
    let r = call("GET", "/v1/status").await.unwrap();
    assert_eq!(r.status(), 200);
    let s: serde_json::Value = r.json().await.unwrap();
    assert_eq!(s["primary"], "a");
    for path in [
        "/v1/nodes/a/drain",
        "/v1/nodes/a/maintenance",
        "/v1/switchover",
        "/v1/config/reload",
    ] {
        let r = call("POST", path).await.unwrap();
        assert_eq!(r.status(), 403, "POST {path} with the read-only token");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
    assert_unchanged(&gw).await;
    let audit = std::fs::read_to_string(&gw.audit).unwrap();
    assert_eq!(audit.matches("\"forbidden\"").count(), 4, "{audit}");
    // The operator token still does everything.
    let (code, _) = gw.admin_call("POST", "/v1/nodes/b/drain", None).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_agent_reporting_draining_takes_the_node_out_like_an_operator_drain() {
    let (dir, a, b) = twins("agentdrain");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let r = reqwest::Client::new()
        .post(format!("http://{}/_demo/state/draining", a.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        gw.wait_metric(
            r#"twinport_node_state{node="a",state="draining"}"#,
            1.0,
            Duration::from_secs(2)
        )
        .await
    );
    let out = load_mixed(gw.url(""), 2, Duration::from_secs(5), 20).await;
    assert!(
        out.iter().all(|o| o.ok && o.node == "b"),
        "{}",
        summary(&out)
    );
    assert_eq!(
        gw.metric(r#"twinport_node_up{node="a"}"#).await,
        Some(1.0),
        "draining is alive, not down"
    );
    assert_eq!(
        gw.metric(r#"twinport_failovers_total{reason="draining"}"#)
            .await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_and_a_file_change_reload_the_config() {
    let (dir, a, b) = twins("hup");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let aa = GwOpts {
        mode: "active-active",
        ..GwOpts::default()
    };
    // The watch notices a changed file within about a second.
    gw.write_config(&aa, "");
    assert!(
        gw.wait_metric("twinport_config_generation", 2.0, Duration::from_secs(3))
            .await
    );
    assert_eq!(
        gw.metric(r#"twinport_node_role{node="a",role="active"}"#)
            .await,
        Some(1.0)
    );
    // SIGHUP reloads even an unchanged file, and the gateway lives on.
    gw.write_config(&GwOpts::default(), "watch_config: false\n");
    gw.proc.signal("HUP");
    assert!(
        gw.wait_metric("twinport_config_generation", 3.0, Duration::from_secs(3))
            .await
    );
    assert_eq!(
        gw.metric(r#"twinport_node_role{node="a",role="primary"}"#)
            .await,
        Some(1.0)
    );
    // A broken file on SIGHUP is refused and counted; traffic goes on.
    std::fs::write(&gw.config, "listeners: [").unwrap();
    gw.proc.signal("HUP");
    assert!(
        gw.wait_metric(
            r#"twinport_config_reloads_total{result="failed"}"#,
            1.0,
            Duration::from_secs(3)
        )
        .await
    );
    assert_eq!(gw.metric("twinport_config_generation").await, Some(3.0));
    let r = reqwest::get(gw.url("/whoami")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "a");
    assert!(gw
        .log_text()
        .contains("configuration refused; the running one stays in force"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificate_rotation_by_reload_serves_new_handshakes_and_keeps_open_connections() {
    let (dir, a, b) = twins("rotate");
    let opts = GwOpts {
        https: true,
        ..GwOpts::default()
    };
    let gw = Gateway::start(&dir, &[&a, &b], &opts);
    let https = gw.https.unwrap();
    let url = format!("https://localhost:{}/whoami", https.port());
    let trusting = |cert: &std::path::Path| {
        let pem = std::fs::read(cert).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .tls_built_in_root_certs(false)
            .resolve("localhost", https)
            .http2_prior_knowledge()
            .build()
            .unwrap()
    };
    // An HTTP/2 connection opened with the old certificate.
    let old_client = trusting(&gw.cert);
    assert_eq!(old_client.get(&url).send().await.unwrap().status(), 200);

    let new_dir = dir.path().join("tls-new");
    let (new_cert, new_key) =
        devtools::write_dev_cert(&new_dir, &["localhost".to_string()]).unwrap();
    gw.write_config_with_cert(&opts, "watch_config: false\n", &new_cert, &new_key);
    let (code, body) = gw.admin_call("POST", "/v1/config/reload", None).await;
    assert_eq!(code, 200, "{body}");

    // New handshakes get the new certificate...
    let new_client = trusting(&new_cert);
    assert_eq!(new_client.get(&url).send().await.unwrap().status(), 200);
    assert!(
        trusting(&gw.cert).get(&url).send().await.is_err(),
        "a new handshake must not see the old certificate"
    );
    // ...and the connection opened before keeps working.
    for _ in 0..5 {
        assert_eq!(old_client.get(&url).send().await.unwrap().status(), 200);
    }
}

fn twinctl(gw: &Gateway, token: Option<&str>, args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(devtools::bin("twinctl"));
    cmd.env_remove("TWINPORT_TOKEN_FILE")
        .env_remove("TWINPORT_TOKEN")
        .env("TWINPORT_ADMIN", format!("http://{}", gw.admin));
    if let Some(t) = token {
        cmd.env("TWINPORT_TOKEN", t);
    }
    let out = cmd.args(args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twinctl_drives_the_admin_api_with_clear_errors_and_exit_codes() {
    let (dir, a, b) = twins("twinctl");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let t = Some(gw.token.as_str());

    let (code, out) = twinctl(&gw, t, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("primary a"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("a ") && l.contains("primary") && l.contains("ready")),
        "{out}"
    );
    let (code, out) = twinctl(&gw, t, &["status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["primary"], "a");

    let (code, out) = twinctl(&gw, t, &["switchover", "b"]);
    assert_eq!((code, out.trim()), (0, "primary is now b"));
    let (code, out) = twinctl(&gw, t, &["drain", "a"]);
    assert_eq!((code, out.trim()), (0, "node a: admin state drain"));
    let (code, out) = twinctl(&gw, t, &["switchover", "a"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("409") && out.contains("drain"), "{out}");
    let (code, _) = twinctl(&gw, t, &["undrain", "a"]);
    assert_eq!(code, 0);
    let (code, out) = twinctl(&gw, t, &["maintenance", "zz"]);
    assert_eq!(code, 5, "{out}");
    let (code, out) = twinctl(&gw, Some("not-the-token-xxxxxxxx"), &["status"]);
    assert_eq!(code, 4, "{out}");
    let (code, out) = twinctl(&gw, None, &["status"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no token"));
    let (code, out) = twinctl(&gw, t, &["reload"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("generation 2"), "{out}");
    let text = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(
        &gw.config,
        text.replace(&format!("http: {}", gw.http), "http: nowhere"),
    )
    .unwrap();
    let (code, out) = twinctl(&gw, t, &["reload"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("422") && out.contains("listeners.http (line 2)"),
        "{out}"
    );
    let mut down = std::process::Command::new(devtools::bin("twinctl"));
    let out = down
        .env("TWINPORT_ADMIN", "http://127.0.0.1:1")
        .env("TWINPORT_TOKEN", "x")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_retry_policy_changes_live_by_reload() {
    let (dir, mut a, b) = twins("retrypolicy");
    // Slow active checks, so that only the proxy sees a's crash.
    let slow_checks = "watch_config: false\nhealth_check:\n  interval: 30s\n  timeout: 1s\n";
    let targets = [0, 1].map(|i| {
        let n = [&a, &b][i];
        (n.name.clone(), n.app.to_string(), n.agent.to_string())
    });
    let gw = Gateway::start_with(&dir, targets, &GwOpts::default(), slow_checks);
    gw.write_config(
        &GwOpts::default(),
        &format!("{slow_checks}retries:\n  max_attempts: 1\n"),
    );
    let (code, body) = gw.admin_call("POST", "/v1/config/reload", None).await;
    assert_eq!(code, 200, "{body}");
    a.crash();
    // No retry allowed: the request that finds a dead is answered 502...
    let r = reqwest::get(gw.url("/whoami")).await.unwrap();
    assert_eq!(r.status(), 502);
    // ...and the refused connection took a out at once: the next one is b's.
    let r = reqwest::get(gw.url("/whoami")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "b");
    // The series exists from the start at 0, and no retry moved it.
    assert_eq!(
        gw.metric(r#"twinport_retries_total{reason="connect_refused"}"#)
            .await,
        Some(0.0)
    );
}

/// `/healthz` (metrics listener, and the admin listener without a token)
/// says whether the gateway itself works: the proxy answers its own
/// self-check and the control loop runs. Twins down do not make the
/// gateway unhealthy; the self-check is neither proxied nor counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthz_follows_the_gateway_itself_not_its_nodes() {
    let (dir, mut a, mut b) = twins("healthz");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let client = reqwest::Client::new();
    let healthz = |addr: std::net::SocketAddr| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            (code, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let end = Instant::now() + Duration::from_secs(5);
    let (code, v) = loop {
        let (code, v) = healthz(gw.metrics).await;
        if code == 200 || Instant::now() > end {
            break (code, v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["healthy"], true);
    assert!(v["proxy_ms"].as_u64().unwrap() < 3000, "{v}");
    assert!(v["control_ms"].as_u64().unwrap() < 3000, "{v}");
    let (code, _) = healthz(gw.admin).await;
    assert_eq!(code, 200, "the admin listener's /healthz needs no token");

    // The self-check path without this process's token is a request like
    // any other: it reaches a node (the demo node has no such page).
    let r = client
        .get(gw.url("/.twinport/self-check"))
        .header("x-twinport-self-check", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.headers()["x-twinport-node"], "a");

    a.crash();
    b.crash();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, v) = healthz(gw.metrics).await;
    assert_eq!(code, 200, "twins down, the gateway itself is fine: {v}");
    // Seconds of self-checks, none counted as a request.
    for class in ["2xx", "5xx"] {
        assert_eq!(
            gw.metric(&format!(
                r#"twinport_requests_total{{code_class="{class}",node="none"}}"#
            ))
            .await
            .unwrap_or(0.0),
            0.0,
            "{class}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_weight_shifts_the_split_and_survives_a_restart() {
    let (dir, a, b) = twins("weight");
    let opts = GwOpts {
        mode: "active-active",
        state_file: true,
        ..GwOpts::default()
    };
    let mut gw = Gateway::start(&dir, &[&a, &b], &opts);
    let (code, body) = gw
        .admin_call("POST", "/v1/nodes/a/weight", Some(json!({ "weight": 300 })))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(node_status(&body["status"], "a")["operator_weight"], 300);
    assert_eq!(node_status(&body["status"], "a")["effective_weight"], 300);
    for bad in [json!({ "weight": 0 }), json!({ "weight": 1001 }), json!({})] {
        let (code, _) = gw.admin_call("POST", "/v1/nodes/a/weight", Some(bad)).await;
        assert_eq!(code, 422);
    }
    let split = |out: &[Outcome]| out.iter().filter(|o| o.node == "a").count();
    let out = load(gw.url("/"), 1, Duration::from_secs(10), 400).await;
    assert!(out.iter().all(|o| o.ok), "{}", summary(&out));
    let on_a = split(&out);
    assert_eq!(on_a, 300, "300:100 over 400 requests");

    // Kept across a restart (server.state_file).
    gw.proc.kill();
    let gw = Gateway::start(&dir, &[&a, &b], &opts);
    let (_, status) = gw.admin_call("GET", "/v1/status", None).await;
    assert_eq!(
        node_status(&status, "a")["operator_weight"],
        300,
        "{status}"
    );
    assert!(gw.log_text().contains("operator state restored"));

    // twinctl; `config` gives the configured weight back.
    let t = Some(gw.token.as_str());
    let (code, out) = twinctl(&gw, t, &["weight", "a", "config"]);
    assert_eq!(
        (code, out.trim()),
        (0, "node a: the configured weight again")
    );
    let (code, out) = twinctl(&gw, t, &["weight", "a", "heavy"]);
    assert_eq!(code, 2, "{out}");
    let (_, status) = gw.admin_call("GET", "/v1/status", None).await;
    assert!(node_status(&status, "a")["operator_weight"].is_null());
    assert_eq!(node_status(&status, "a")["effective_weight"], 100);
}
