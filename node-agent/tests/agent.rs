//! The node-agent with the real gateway, two real agents and real app
//! processes, on loopback.

use devtools::bin;
use devtools::harness::agent::*;
use devtools::harness::gateway::{load, load_mixed_until, parse_sample, summary};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn primary(gw: &devtools::harness::gateway::Gateway) -> String {
    gw.admin_call("GET", "/v1/status", None).await.1["primary"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Asserts that the gateway sees both nodes eligible on `version`; its status.
async fn both_eligible_on(
    gw: &devtools::harness::gateway::Gateway,
    version: &str,
) -> serde_json::Value {
    let (_, g) = gw.admin_call("GET", "/v1/status", None).await;
    for n in g["nodes"].as_array().unwrap() {
        assert_eq!(
            (n["version"].as_str(), n["eligible"].as_bool()),
            (Some(version), Some(true)),
            "{n}"
        );
    }
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_probe_takes_the_node_out_within_fall_and_back_after_rise() {
    let (_dir, a, b, gw) = appliance("agent-probe", UPGRADE).await;
    let p = primary(&gw).await;
    let (node, twin) = if p == "a" { (&a, &b) } else { (&b, &a) };

    // Fall is 2 checks every 100 ms (the command probe): the agent must
    // report unhealthy within 2 intervals plus one probe's run.
    let load_task = tokio::spawn(load(gw.url("/whoami"), 4, Duration::from_secs(4), 2_000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&node.fail_marker, "").unwrap();
    let t = Instant::now();
    assert!(
        node.wait_state("unhealthy", Duration::from_secs(3)).await,
        "{}",
        node.log_text()
    );
    let detected = t.elapsed();
    assert!(
        detected <= Duration::from_millis(600),
        "unhealthy after {detected:?}"
    );
    let (code, ready) = node.ready().await;
    assert_eq!(code, 503);
    assert!(
        ready["reason"]
            .as_str()
            .unwrap()
            .contains("probe marker failed"),
        "{ready}"
    );

    // The gateway takes it out of rotation; the twin serves.
    assert!(wait_gateway_health(&gw, &node.name, "down", Duration::from_secs(3)).await);
    let out = load_task.await.unwrap();
    assert!(out.iter().all(|o| o.ok), "{}", summary(&out));
    let late: Vec<_> = out
        .iter()
        .filter(|o| o.at > Instant::now() - Duration::from_millis(500))
        .collect();
    assert!(
        !late.is_empty() && late.iter().all(|o| o.node == twin.name),
        "the last requests went to {}",
        twin.name
    );

    // Back after rise (2 passes) once the probe passes again.
    std::fs::remove_file(&node.fail_marker).unwrap();
    let t = Instant::now();
    assert!(node.wait_state("ready", Duration::from_secs(3)).await);
    assert!(
        t.elapsed() <= Duration::from_millis(600),
        "ready after {:?}",
        t.elapsed()
    );
    assert!(wait_gateway_health(&gw, &node.name, "up", Duration::from_secs(3)).await);
    let s = node.status().await;
    let moves: Vec<(String, String)> = s["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap().to_string(),
                t["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(moves[0], ("unhealthy".into(), "ready".into()), "{moves:?}");
    assert_eq!(moves[1], ("ready".into(), "unhealthy".into()), "{moves:?}");
    let metrics = reqwest::get(format!("http://{}/metrics", node.ready))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = format!(
        "twinport_agent_transitions_total{{from=\"ready\",to=\"unhealthy\",node=\"{}\"}}",
        node.name
    );
    assert_eq!(parse_sample(&metrics, &sample), Some(1.0), "{metrics}");
}

/// Runs `twinctl rolling-upgrade` to `version` from `release` against both
/// agents; its exit code, stdout and stderr.
fn rolling_upgrade(
    gw: &devtools::harness::gateway::Gateway,
    a: &Twin,
    b: &Twin,
    release: &std::path::Path,
    version: &str,
) -> (i32, String, String) {
    let out = Command::new(bin("twinctl"))
        .args([
            "--admin",
            &format!("http://{}", gw.admin),
            "rolling-upgrade",
            "--version",
            version,
        ])
        .arg("--release")
        .arg(release)
        .args([
            "--agent",
            &format!("a={}", a.control_url()),
            "--agent",
            &format!("b={}", b.control_url()),
        ])
        .args(["--step-timeout", "30s"])
        .env("TWINPORT_TOKEN", GATEWAY_TOKEN)
        .env(
            "TWINPORT_AGENT_TOKEN_FILE",
            a.config.parent().unwrap().join("agent.token"),
        )
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_upgrade_under_load_fails_no_request() {
    let (dir, a, b, gw) = appliance("agent-rolling", UPGRADE).await;
    let v2 = release(&dir, "2.0.0", true);
    let stop = Arc::new(AtomicBool::new(false));
    let load_task = tokio::spawn(load_mixed_until(
        gw.url(""),
        6,
        Duration::from_secs(90),
        20_000,
        stop.clone(),
        false,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (code, stdout, stderr) =
        tokio::task::block_in_place(|| rolling_upgrade(&gw, &a, &b, &v2, "2.0.0"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let out = load_task.await.unwrap();
    assert_eq!(code, 0, "twinctl failed:\n{stdout}\n{stderr}");
    assert!(out.len() > 500, "{}", summary(&out));
    assert!(out.iter().all(|o| o.ok), "{}\n{stdout}", summary(&out));
    println!("{}", summary(&out));
    println!("{stdout}");

    // Both nodes on 2.0.0, as the agents, the gateway and the app say.
    for t in [&a, &b] {
        let s = t.status().await;
        assert_eq!(
            (s["state"].as_str(), s["version"].as_str()),
            (Some("ready"), Some("2.0.0")),
            "{s}"
        );
        assert_eq!(s["upgrade"]["result"], "succeeded");
        assert_eq!(
            std::fs::read_link(t.state_dir.join("current")).unwrap(),
            std::path::Path::new("releases/2.0.0")
        );
    }
    both_eligible_on(&gw, "2.0.0").await;
    let last = &out[out.len() - 1];
    assert_eq!(last.version, "2.0.0");

    // Every step in the audit logs: the gateway's (switchover, drain,
    // undrain of each node) and each agent's (each upgrade step).
    let audit: Vec<String> = read_json_lines(&gw.audit)
        .iter()
        .filter(|e| e["status"] == 200)
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for n in ["a", "b"] {
        for action in ["drain", "undrain"] {
            let want = format!("POST /v1/nodes/{n}/{action}");
            assert!(audit.contains(&want), "{want} missing from {audit:?}");
        }
    }
    assert!(
        audit.iter().any(|a| a == "POST /v1/switchover"),
        "{audit:?}"
    );
    for t in [&a, &b] {
        let steps: Vec<String> = t
            .audit_lines()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect();
        for step in [
            "install", "drain", "stop", "switch", "start", "verify", "ready",
        ] {
            let want = format!("upgrade to 2.0.0: {step}");
            assert!(
                steps.contains(&want),
                "{want} missing from node {}'s audit: {steps:?}",
                t.name
            );
        }
        assert!(
            steps.contains(&"upgrade 1.0.0 → 2.0.0".to_string()),
            "{steps:?}"
        );
    }
    for step in [
        "[1/6] switch traffic away",
        "[4/6] upgrade to 2.0.0",
        "agent: verify ok",
        "[6/6] undrain at the gateway: done",
    ] {
        assert!(stdout.contains(step), "progress lacks `{step}`:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_that_never_gets_ready_is_rolled_back_and_stops_the_roll_out() {
    let (dir, a, b, gw) = appliance("agent-rollback", UPGRADE).await;
    let broken = release(&dir, "2.0.0-broken", false);
    let stop = Arc::new(AtomicBool::new(false));
    let load_task = tokio::spawn(load_mixed_until(
        gw.url(""),
        4,
        Duration::from_secs(60),
        20_000,
        stop.clone(),
        false,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = primary(&gw).await;
    let (code, stdout, stderr) =
        tokio::task::block_in_place(|| rolling_upgrade(&gw, &a, &b, &broken, "2.0.0-broken"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let out = load_task.await.unwrap();

    assert_eq!(code, 1, "{stdout}\n{stderr}");
    // The standby goes first and is the one rolled back.
    let (first, second) = if p == "a" { (&b, &a) } else { (&a, &b) };
    assert!(
        stderr.contains(&format!("roll-out stopped at node {}", first.name)),
        "{stderr}"
    );
    assert!(stderr.contains("ended rolled_back"), "{stderr}");
    assert!(
        stderr.contains("not ready within 5s"),
        "the reason is given: {stderr}"
    );
    assert!(
        stderr.contains(&format!("traffic is on {}", second.name)),
        "{stderr}"
    );

    let s = first.status().await;
    assert_eq!(
        (s["state"].as_str(), s["version"].as_str()),
        (Some("ready"), Some("1.0.0")),
        "{s}"
    );
    assert_eq!(s["upgrade"]["result"], "rolled_back");
    assert_eq!(
        std::fs::read_link(first.state_dir.join("current")).unwrap(),
        std::path::Path::new("releases/1.0.0")
    );
    let untouched = second.status().await;
    assert_eq!(untouched["version"], "1.0.0");
    assert!(
        untouched["upgrade"].is_null(),
        "the second node was not touched: {untouched}"
    );
    assert!(untouched["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["to"] != "draining"));

    // No request failed, and none was answered by the broken release.
    assert!(out.iter().all(|o| o.ok), "{}", summary(&out));
    assert!(
        out.iter().all(|o| o.version == "1.0.0"),
        "{}",
        summary(&out)
    );
    let (_, g) = gw.admin_call("GET", "/v1/status", None).await;
    let n = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == first.name.as_str())
        .unwrap()
        .clone();
    assert_eq!(n["admin"], "drain", "the failed node stays drained: {n}");
    assert_eq!(g["primary"], second.name.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_app_is_restarted_and_readiness_follows() {
    let (_dir, a, _b, _gw) = appliance("agent-restart", UPGRADE).await;
    let before = a.status().await;
    let pid = before["app"]["pid"].as_u64().expect("the app's pid");
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    assert!(
        a.wait_state("unhealthy", Duration::from_secs(3)).await,
        "{}",
        a.log_text()
    );
    assert!(
        a.wait_state("ready", Duration::from_secs(5)).await,
        "{}",
        a.log_text()
    );
    let after = a.status().await;
    assert_eq!(after["app"]["restarts"], 1, "{after}");
    assert_ne!(after["app"]["pid"].as_u64(), Some(pid));
    assert!(after["app"]["last_exit"]
        .as_str()
        .unwrap()
        .contains("SIGKILL"));
    let metrics = reqwest::get(format!("http://{}/metrics", a.ready))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        parse_sample(&metrics, "twinport_agent_app_restarts_total{node=\"a\"}"),
        Some(1.0)
    );
    assert_eq!(
        parse_sample(&metrics, "twinport_agent_app_up{node=\"a\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let (dir, a, _b, _gw) = appliance("agent-bad", UPGRADE).await;
    let before = a.status().await;
    let audit_before = a.audit_lines().len();

    let cases: [(&str, &str, Option<&str>, u16, &str); 9] = [
        (
            "POST",
            "/v1/state",
            Some(r#"{"state":"flying"}"#),
            422,
            "`flying` is not a state",
        ),
        (
            "POST",
            "/v1/state",
            Some(r#"{"state":"#),
            400,
            "not the expected JSON",
        ),
        (
            "POST",
            "/v1/state",
            Some(r#"{"state":"ready","force":true}"#),
            400,
            "unknown field `force`",
        ),
        (
            "POST",
            "/v1/upgrade",
            Some(r#"{"release":"/nonexistent/release","version":"2.0.0"}"#),
            422,
            "release path /nonexistent/release does not exist",
        ),
        (
            "POST",
            "/v1/upgrade",
            Some(r#"{"release":"/","version":"../../etc"}"#),
            422,
            "version `../../etc` is not usable",
        ),
        (
            "POST",
            "/v1/upgrade",
            Some(r#"{"release":"/","version":"1.0.0"}"#),
            409,
            "version 1.0.0 is the one running now",
        ),
        (
            "POST",
            "/v1/upgrade",
            Some(r#"{"version":"2.0.0"}"#),
            400,
            "missing field `release`",
        ),
        ("POST", "/v1/teleport", None, 404, "no such route"),
        ("GET", "/v1/upgrade", None, 404, "no upgrade has run"),
    ];
    for (method, path, body, status, text) in cases {
        let (code, v) = a.call(method, path, body).await;
        assert_eq!(code, status, "{method} {path} {body:?}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(text),
            "{method} {path}: {v}"
        );
    }
    // A refused transition: drain while in maintenance.
    assert_eq!(a.call("POST", "/v1/maintenance", None).await.0, 200);
    let (code, v) = a.call("POST", "/v1/drain", None).await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["message"], "cannot drain while the node is maintenance: undrain it first; maintenance already takes no traffic");
    assert_eq!(a.call("POST", "/v1/undrain", None).await.0, 200);
    assert!(a.wait_state("ready", Duration::from_secs(2)).await);

    // No token, or a wrong one: 401, and written to the audit log.
    for auth in [None, Some("Bearer wrong-token-0123456789")] {
        let mut req = reqwest::Client::new().post(format!("{}/v1/drain", a.control_url()));
        if let Some(h) = auth {
            req = req.header("authorization", h);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 401);
    }
    // The read-only token reads, and may change nothing (403).
    let reader = |m: &str, path: &str| {
        reqwest::Client::new()
            .request(m.parse().unwrap(), format!("{}{path}", a.control_url()))
            .bearer_auth(devtools::harness::agent::AGENT_READ_TOKEN)
            .send()
    };
    assert_eq!(reader("GET", "/v1/status").await.unwrap().status(), 200);
    for path in ["/v1/drain", "/v1/maintenance"] {
        assert_eq!(reader("POST", path).await.unwrap().status(), 403, "{path}");
    }
    let after = a.status().await;
    assert_eq!(after["state"], "ready");
    assert_eq!(after["version"], before["version"]);
    assert_eq!(
        after["releases"], before["releases"],
        "nothing was installed"
    );
    let audit = a.audit_lines();
    assert_eq!(
        audit.len(),
        audit_before + 9 + 3 + 2 + 3 + 1,
        "every call audited (the status calls too)"
    );
    let n = audit.len();
    assert_eq!(audit[n - 6]["result"], "unauthorized");
    assert_eq!(audit[n - 5]["result"], "unauthorized");
    assert_eq!(audit[n - 4]["result"], "ok", "the reader's status call");
    assert_eq!(audit[n - 3]["result"], "forbidden");
    assert_eq!(audit[n - 2]["result"], "forbidden");
    assert_eq!(audit[n - 1]["action"], "GET /v1/status");

    // A malformed config: the agent refuses to start, naming file, line and field.
    let bad = dir.path().join("bad-agent.yaml");
    let text = std::fs::read_to_string(&a.config).unwrap().replace(
        "    interval: 100ms\n    timeout: 250ms",
        "    interval: 1ms\n    timeout: 250ms",
    );
    std::fs::write(&bad, text).unwrap();
    let (code, err) = devtools::check_config("node-agent", &bad);
    assert_eq!(code, Some(64));
    assert!(
        err.contains("bad-agent.yaml: invalid configuration"),
        "{err}"
    );
    assert!(
        err.contains("probes[0].interval (line 16): 1ms is too short (at least 50ms)"),
        "{err}"
    );
    assert_eq!(devtools::check_config("node-agent", &a.config).0, Some(0));
}

/// With session affinity, `twinctl rolling-upgrade` soft-drains each node:
/// visitors whose session is on it finish their flows there (0 sessions
/// lost), new visitors go to the twin, and the visitors still active when
/// `affinity.drain_timeout` passes move to the twin; the upgrade proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_upgrade_soft_drains_and_lets_sessions_finish() {
    use devtools::harness::gateway::GwOpts;
    use devtools::harness::visitors::{crowd, visit_all, Visitor};
    let key_dir = devtools::TempDir::new("agent-soft-key");
    let key = key_dir.path().join("affinity.key");
    devtools::write_secret(&key, "rolling-soft-drain-key-0123456789abcdef\n");
    let drain_timeout = Duration::from_secs(6);
    let opts = GwOpts {
        mode: "active-active",
        extra: format!(
            "affinity:\n  mode: cookie\n  secret_file: {}\n  idle_timeout: 2s\n  drain_timeout: 6s\n",
            key.display()
        ),
        ..GwOpts::default()
    };
    let (dir, a, b, gw) = appliance_with("agent-soft", UPGRADE, &opts).await;
    let base = gw.url("");
    let v2 = release(&dir, "2.0.0", true);
    let finishers = visit_all(&base, crowd("f", 40), 1, 20, Duration::ZERO).await;
    let stayers = visit_all(&base, crowd("s", 20), 1, 20, Duration::ZERO).await;

    // Finishers: a 3 s flow from now on. Stayers: a request every 200 ms
    // until the roll-out is over (at most 120 s).
    let stop = Arc::new(AtomicBool::new(false));
    let flows = tokio::spawn(visit_all(
        base.clone(),
        finishers,
        31,
        40,
        Duration::from_millis(100),
    ));
    let mut stay_tasks = Vec::new();
    for mut v in stayers {
        let (stop, base) = (stop.clone(), base.clone());
        stay_tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let end = Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                v.visit(&client, &base).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            v
        }));
    }
    // Newcomers: once a soft drain is seen, 10 new visitors.
    let newcomers = {
        let (admin, token, base) = (gw.admin, gw.token.clone(), base.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end {
                let s: serde_json::Value = client
                    .get(format!("http://{admin}/v1/status"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let draining = s["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|n| !n["soft_drain"].is_null())
                    .map(|n| n["name"].as_str().unwrap().to_string());
                if let Some(d) = draining {
                    return (
                        d,
                        visit_all(&base, crowd("n", 10), 3, 10, Duration::ZERO).await,
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no soft drain seen within 30 s");
        })
    };

    let started = Instant::now();
    let (code, stdout, stderr) =
        tokio::task::block_in_place(|| rolling_upgrade(&gw, &a, &b, &v2, "2.0.0"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(code, 0, "twinctl failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("soft drain at the gateway"), "{stdout}");
    println!("{stdout}");

    let finishers = flows.await.unwrap();
    let mut stayers = Vec::new();
    for t in stay_tasks {
        stayers.push(t.await.unwrap());
    }
    let (drained, newcomers) = newcomers.await.unwrap();
    let all: Vec<&Visitor> = finishers.iter().chain(&stayers).chain(&newcomers).collect();
    let failed: Vec<_> = all
        .iter()
        .flat_map(|v| v.visits.iter())
        .filter(|x| !x.ok())
        .take(3)
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");

    // Finishers lost no session: every request on their node, known there.
    for v in &finishers {
        assert_eq!(v.sessions_lost(), 0, "{}: {:?}", v.id, v.visits);
        let node = v.first_node().unwrap();
        assert!(v.visits.iter().all(|x| x.node == node), "{}", v.id);
    }
    // Newcomers went to the twin of the draining node.
    assert!(
        newcomers
            .iter()
            .all(|v| v.visits.iter().all(|x| x.node != drained)),
        "new visitors reached {drained}, which was soft-draining"
    );
    // Stayers on the first drained node kept it until drain_timeout, then
    // moved once; none lost a session more than once per drained node.
    let mut moved_late = 0;
    for v in &stayers {
        assert!(v.sessions_lost() <= 2, "{}: {:?}", v.id, v.visits);
        if v.first_node() == Some(drained.as_str()) {
            let first_move = v
                .visits
                .iter()
                .skip(1)
                .find(|x| x.session == "created")
                .unwrap_or_else(|| panic!("{} never moved off {drained}", v.id));
            let after = first_move.at.duration_since(started);
            assert!(
                after >= drain_timeout - Duration::from_secs(1),
                "{} moved after {after:?}, before drain_timeout",
                v.id
            );
            moved_late += 1;
        }
    }
    assert!(moved_late > 0, "no stayer was on {drained}");
    let g = both_eligible_on(&gw, "2.0.0").await;
    assert!(
        g["transitions"]
            .to_string()
            .contains("drain_timeout passed"),
        "{g}"
    );
}
