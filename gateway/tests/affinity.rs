//! Session affinity against real processes: the gateway and two demo twin
//! nodes whose `/app` keeps sessions in memory, visited by simulated
//! visitors that each keep their own cookies.

use devtools::harness::gateway::*;
use devtools::harness::visitors::{crowd, visit_all, Visitor};
use devtools::TempDir;
use std::time::Duration;

const KEY: &str = "affinity-test-key-0123456789abcdef0123456789";
const COOKIE: &str = "TWINPORT_AFFINITY";

/// The `affinity:` section for `mode`, with its key file written in `dir`.
fn affinity_yaml(dir: &TempDir, mode: &str, more: &str) -> String {
    let key = dir.path().join("affinity.key");
    devtools::write_secret(&key, &format!("{KEY}\n"));
    let key_line = if mode == "cookie" {
        format!("  secret_file: {}\n", key.display())
    } else {
        String::new()
    };
    format!("affinity:\n  mode: {mode}\n{key_line}{more}")
}

fn active_active(dir: &TempDir, mode: &str, more: &str) -> GwOpts {
    GwOpts {
        mode: "active-active",
        extra: affinity_yaml(dir, mode, more),
        ..GwOpts::default()
    }
}

/// Sum of `twinport_affinity_moved_total` over its reasons.
async fn moved_total(gw: &Gateway) -> f64 {
    let mut sum = 0.0;
    for r in ["down", "drain", "maintenance", "role", "retry"] {
        sum += gw
            .metric(&format!(r#"twinport_affinity_moved_total{{reason="{r}"}}"#))
            .await
            .unwrap_or(0.0);
    }
    sum
}

/// 200 visitors × 50 requests, active-active 50/50: no request reaches a
/// node without its session, and the visitors split evenly.
async fn every_request_finds_its_session(mode: &str) {
    let (dir, a, b) = twins(&format!("aff-split-{mode}"));
    let gw = Gateway::start(&dir, &[&a, &b], &active_active(&dir, mode, ""));
    let visitors = visit_all(&gw.url(""), crowd("v", 200), 50, 25, Duration::ZERO).await;
    let requests: usize = visitors.iter().map(|v| v.visits.len()).sum();
    assert_eq!(requests, 10_000);
    let failed: Vec<_> = visitors
        .iter()
        .flat_map(|v| v.visits.iter())
        .filter(|v| !v.ok())
        .take(3)
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let lost: usize = visitors.iter().map(Visitor::sessions_lost).sum();
    assert_eq!(
        lost, 0,
        "requests that reached a node without their session"
    );
    for v in &visitors {
        assert_eq!(v.visits[0].session, "created", "{}", v.id);
        let node = v.first_node().unwrap();
        assert!(
            v.visits.iter().all(|x| x.node == node),
            "visitor {} moved between nodes: {:?}",
            v.id,
            v.visits.iter().map(|x| x.node.as_str()).collect::<Vec<_>>()
        );
    }
    let on_a = visitors
        .iter()
        .filter(|v| v.first_node() == Some("a"))
        .count();
    assert!(
        (90..=110).contains(&on_a),
        "{on_a} of 200 visitors on node a, want 100 ± 10 %"
    );
    assert_eq!(moved_total(&gw).await, 0.0);
    // Sessions per node are counted (the sweep runs every second).
    assert!(
        gw.wait_metric(
            r#"twinport_affinity_sessions{node="a"}"#,
            on_a as f64,
            Duration::from_secs(5)
        )
        .await,
        "sessions on a: {:?}, want {on_a}; on b {:?}, table {:?}",
        gw.metric(r#"twinport_affinity_sessions{node="a"}"#).await,
        gw.metric(r#"twinport_affinity_sessions{node="b"}"#).await,
        gw.metric("twinport_affinity_table_entries").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_gateway_cookie_every_request_finds_its_session() {
    every_request_finds_its_session("cookie").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_application_cookie_every_request_finds_its_session() {
    every_request_finds_its_session("app-cookie").await;
}

/// The node of half the visitors dies: each of them is answered by the
/// twin from then on, re-creates the session there once, and stays there
/// when the node comes back.
async fn a_dead_nodes_visitors_move_once_and_stay(mode: &str) {
    let (dir, mut a, b) = twins(&format!("aff-kill-{mode}"));
    let gw = Gateway::start(&dir, &[&a, &b], &active_active(&dir, mode, ""));
    let base = gw.url("");
    let visitors = visit_all(&base, crowd("v", 200), 5, 25, Duration::ZERO).await;
    let on_a: Vec<String> = visitors
        .iter()
        .filter(|v| v.first_node() == Some("a"))
        .map(|v| v.id.clone())
        .collect();
    assert!((90..=110).contains(&on_a.len()), "{} on a", on_a.len());
    assert_eq!(
        visitors.iter().map(Visitor::sessions_lost).sum::<usize>(),
        0
    );

    a.crash();
    let visitors = visit_all(&base, visitors, 5, 25, Duration::ZERO).await;
    for v in &visitors {
        let after: Vec<_> = v.visits[5..].iter().collect();
        assert!(
            after.iter().all(|x| x.ok() && x.node == "b"),
            "{}: {after:?}",
            v.id
        );
        let created = after.iter().filter(|x| x.session == "created").count();
        if on_a.contains(&v.id) {
            assert_eq!(
                created, 1,
                "{}: the session is re-created on b once: {after:?}",
                v.id
            );
            assert_eq!(after[0].session, "created", "{}", v.id);
        } else {
            assert_eq!(created, 0, "{}: {after:?}", v.id);
        }
    }
    assert_eq!(
        moved_total(&gw).await,
        on_a.len() as f64,
        "affinity moves, want one per visitor of node a"
    );

    a.restart();
    assert!(
        gw.wait_metric(
            r#"twinport_node_up{node="a"}"#,
            1.0,
            Duration::from_secs(15)
        )
        .await
    );
    let visitors = visit_all(&base, visitors, 5, 25, Duration::ZERO).await;
    for v in &visitors {
        assert!(
            v.visits[10..]
                .iter()
                .all(|x| x.ok() && x.node == "b" && x.session == "known"),
            "{} flipped back: {:?}",
            v.id,
            &v.visits[10..]
        );
    }
    assert_eq!(moved_total(&gw).await, on_a.len() as f64, "no flip back");
    // New visitors go by weight again.
    let new = visit_all(&base, crowd("new", 20), 3, 5, Duration::ZERO).await;
    let new_on_a = new.iter().filter(|v| v.first_node() == Some("a")).count();
    assert!(
        (5..=15).contains(&new_on_a),
        "{new_on_a} of 20 new visitors on a"
    );
    assert_eq!(new.iter().map(Visitor::sessions_lost).sum::<usize>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_cookie_visitors_of_a_dead_node_move_once_and_stay() {
    a_dead_nodes_visitors_move_once_and_stay("cookie").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn app_cookie_visitors_of_a_dead_node_move_once_and_stay() {
    a_dead_nodes_visitors_move_once_and_stay("app-cookie").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_expired_and_garbled_cookies_are_ignored_never_an_error() {
    let (dir, a, b) = twins("aff-tamper");
    let gw = Gateway::start(&dir, &[&a, &b], &active_active(&dir, "cookie", ""));
    let base = gw.url("");
    let codec = gateway::affinity::CookieCodec::new(KEY.as_bytes());
    let now = gateway::affinity::unix_now();
    let other = gateway::affinity::CookieCodec::new(b"some other key, 32 characters long");
    let cases = [
        ("expired", codec.encode("a", now - 1)),
        ("forged", other.encode("a", now + 3600)),
        ("forged", codec.encode("nobody", now + 3600)),
        ("malformed", "garbage".to_string()),
        ("malformed", "AAAA".to_string()),
    ];
    let mut visitors = Vec::new();
    for (i, (_, value)) in cases.iter().enumerate() {
        let mut v = Visitor::new(format!("t{i}"));
        v.set_cookie(COOKIE, value);
        visitors.push(v);
    }
    let client = reqwest::Client::new();
    for v in visitors.iter_mut() {
        let before = v.cookie(COOKIE).unwrap().to_string();
        let first = v.visit(&client, &base).await;
        assert_eq!(first.status, 200, "{}: {first:?}", v.id);
        let fresh = v.cookie(COOKIE).unwrap().to_string();
        assert_ne!(
            fresh, before,
            "{}: a fresh cookie replaces the bad one",
            v.id
        );
        // The fresh cookie holds from now on.
        for _ in 0..5 {
            let x = v.visit(&client, &base).await;
            assert!(
                x.ok() && x.node == first.node && x.session == "known",
                "{}: {x:?}",
                v.id
            );
        }
    }
    for (reason, want) in [("expired", 1.0), ("forged", 2.0), ("malformed", 2.0)] {
        assert_eq!(
            gw.metric(&format!(
                r#"twinport_affinity_cookies_rejected_total{{reason="{reason}"}}"#
            ))
            .await,
            Some(want),
            "{reason}"
        );
    }
    // A cookie for node b, signed with the gateway's key, is honoured even
    // by a visitor who never got it from this gateway (a pair shares keys).
    let mut v = Visitor::new("carried");
    v.set_cookie(COOKIE, &codec.encode("b", now + 3600));
    for _ in 0..4 {
        assert_eq!(v.visit(&client, &base).await.node, "b");
    }
    assert_eq!(moved_total(&gw).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_inserted_cookie_is_http_only_lax_and_secure_on_https() {
    let (dir, a, b) = twins("aff-attrs");
    let mut opts = active_active(&dir, "cookie", "");
    opts.https = true;
    let gw = Gateway::start(&dir, &[&a, &b], &opts);
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let plain = client.get(gw.url("/whoami")).send().await.unwrap();
    let sc = plain.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(sc.starts_with("TWINPORT_AFFINITY="), "{sc}");
    assert!(
        sc.contains("HttpOnly") && sc.contains("SameSite=Lax"),
        "{sc}"
    );
    assert!(!sc.contains("Secure"), "{sc}");
    assert_eq!(plain.headers()["cache-control"], "private");
    let tls = client
        .get(format!(
            "https://localhost:{}/whoami",
            gw.https.unwrap().port()
        ))
        .send()
        .await
        .unwrap();
    let sc = tls.headers()["set-cookie"].to_str().unwrap();
    assert!(sc.contains("Secure"), "{sc}");
}

/// A soft drain through the admin API: the node's visitors keep their
/// sessions there, new visitors go to the twin; once the sessions stop
/// coming the soft drain ends by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soft_drain_keeps_sessions_and_ends_when_they_stop() {
    let (dir, a, b) = twins("aff-soft");
    let more = "  idle_timeout: 2s\n  drain_timeout: 60s\n";
    let gw = Gateway::start(&dir, &[&a, &b], &active_active(&dir, "app-cookie", more));
    let base = gw.url("");
    let visitors = visit_all(&base, crowd("v", 40), 2, 10, Duration::ZERO).await;
    let on_a = visitors
        .iter()
        .filter(|v| v.first_node() == Some("a"))
        .count();
    let (code, body) = gw
        .admin_call("POST", "/v1/nodes/a/drain?soft=true", None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["soft_drain"], true, "{body}");
    // The old visitors go on where they are; new ones all go to b.
    let (visitors, new) = tokio::join!(
        visit_all(&base, visitors, 5, 10, Duration::from_millis(50)),
        visit_all(&base, crowd("new", 20), 3, 10, Duration::ZERO)
    );
    for v in &visitors {
        assert_eq!(v.sessions_lost(), 0, "{}: {:?}", v.id, v.visits);
        let node = v.first_node().unwrap();
        assert!(
            v.visits.iter().all(|x| x.ok() && x.node == node),
            "{}",
            v.id
        );
    }
    assert!(new
        .iter()
        .all(|v| v.visits.iter().all(|x| x.ok() && x.node == "b")));
    let (_, s) = gw.admin_call("GET", "/v1/status", None).await;
    let na = &s["nodes"][0];
    assert_eq!(na["soft_drain"]["by"], "operator", "{s}");
    assert_eq!(na["eligible"], false);
    assert!(na["sessions"].as_u64().unwrap() >= on_a as u64 / 2, "{na}");
    assert!(s["affinity"]["note"]
        .as_str()
        .unwrap()
        .contains("sessions stay"));
    // No request for idle_timeout: the sessions are gone, the drain is hard.
    let s = gw
        .wait_status(Duration::from_secs(10), |s| {
            s["nodes"][0]["soft_drain"].is_null()
        })
        .await;
    assert!(
        s["nodes"][0]["soft_drain"].is_null() && s["nodes"][0]["sessions"] == 0,
        "the soft drain did not end once its sessions stopped: {s}"
    );
    assert!(
        s["transitions"]
            .to_string()
            .contains("no session left on the node"),
        "{s}"
    );
    assert_eq!(moved_total(&gw).await, 0.0);
}

/// Active-standby: sessions follow the primary, the status says so, and a
/// switchover moves every visitor once (reason `role`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_active_standby_a_switchover_moves_every_session_once() {
    let (dir, a, b) = twins("aff-as");
    let opts = GwOpts {
        extra: affinity_yaml(&dir, "cookie", ""),
        ..GwOpts::default()
    };
    let gw = Gateway::start(&dir, &[&a, &b], &opts);
    let base = gw.url("");
    let (_, s) = gw.admin_call("GET", "/v1/status", None).await;
    assert!(
        s["affinity"]["note"]
            .as_str()
            .unwrap()
            .contains("a switchover moves every session"),
        "{s}"
    );
    let visitors = visit_all(&base, crowd("v", 30), 3, 10, Duration::ZERO).await;
    assert!(visitors
        .iter()
        .all(|v| v.visits.iter().all(|x| x.node == "a")));
    let (code, _) = gw
        .admin_call(
            "POST",
            "/v1/switchover",
            Some(serde_json::json!({"to": "b"})),
        )
        .await;
    assert_eq!(code, 200);
    let visitors = visit_all(&base, visitors, 3, 10, Duration::ZERO).await;
    for v in &visitors {
        assert!(
            v.visits[3..].iter().all(|x| x.ok() && x.node == "b"),
            "{}",
            v.id
        );
        assert_eq!(v.sessions_lost(), 1, "{}: moved once", v.id);
    }
    assert_eq!(
        gw.metric(r#"twinport_affinity_moved_total{reason="role"}"#)
            .await,
        Some(30.0)
    );
}

/// Affinity is switched on and off by a reload, like everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn affinity_follows_a_reload() {
    let (dir, a, b) = twins("aff-reload");
    let mut opts = GwOpts {
        mode: "active-active",
        ..GwOpts::default()
    };
    let gw = Gateway::start(&dir, &[&a, &b], &opts);
    let client = reqwest::Client::new();
    let cookie_set = |r: &reqwest::Response| r.headers().contains_key("set-cookie");
    let r = client.get(gw.url("/whoami")).send().await.unwrap();
    assert!(!cookie_set(&r));
    opts.extra = affinity_yaml(&dir, "cookie", "");
    gw.write_config(&opts, "");
    let (code, body) = gw.admin_call("POST", "/v1/config/reload", None).await;
    assert_eq!(code, 200, "{body}");
    let r = client.get(gw.url("/whoami")).send().await.unwrap();
    assert!(cookie_set(&r));
    let (_, s) = gw.admin_call("GET", "/v1/status", None).await;
    assert_eq!(s["affinity"]["mode"], "cookie");
    opts.extra = String::new();
    gw.write_config(&opts, "");
    let (code, body) = gw.admin_call("POST", "/v1/config/reload", None).await;
    assert_eq!(code, 200, "{body}");
    let r = client.get(gw.url("/whoami")).send().await.unwrap();
    assert!(!cookie_set(&r));
}

/// A node whose agent reports `draining` is soft-drained too: its sessions
/// still reach it, new visitors do not, and `affinity.drain_timeout` ends
/// it; the agent back to ready ends it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_reporting_draining_soft_drains_its_node() {
    let (dir, a, b) = twins("aff-agent");
    let more = "  idle_timeout: 30s\n  drain_timeout: 3s\n";
    let gw = Gateway::start(&dir, &[&a, &b], &active_active(&dir, "cookie", more));
    let base = gw.url("");
    let visitors = visit_all(&base, crowd("v", 20), 2, 10, Duration::ZERO).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://{}/_demo/state/draining", a.agent))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let by_agent = |s: &serde_json::Value| s["nodes"][0]["soft_drain"]["by"] == "agent";
    let s = gw.wait_status(Duration::from_secs(5), by_agent).await;
    assert!(by_agent(&s), "no soft drain by the agent: {s}");
    let (visitors, new) = tokio::join!(
        visit_all(&base, visitors, 3, 10, Duration::ZERO),
        visit_all(&base, crowd("new", 10), 2, 10, Duration::ZERO)
    );
    assert!(visitors.iter().all(|v| v.sessions_lost() == 0));
    assert!(new.iter().all(|v| v.visits.iter().all(|x| x.node == "b")));
    // Sessions keep coming, so drain_timeout (3 s) ends the soft drain and
    // the rest move to b.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, s) = gw.admin_call("GET", "/v1/status", None).await;
    assert!(s["nodes"][0]["soft_drain"].is_null(), "{s}");
    assert!(
        s["transitions"]
            .to_string()
            .contains("drain_timeout passed"),
        "{s}"
    );
    let visitors = visit_all(&base, visitors, 2, 10, Duration::ZERO).await;
    for v in visitors.iter().filter(|v| v.first_node() == Some("a")) {
        assert_eq!(v.visits[5].node, "b", "{}", v.id);
        assert_eq!(v.sessions_lost(), 1, "{}", v.id);
    }
    let on_a = visitors
        .iter()
        .filter(|v| v.first_node() == Some("a"))
        .count();
    assert_eq!(
        gw.metric(r#"twinport_affinity_moved_total{reason="drain"}"#)
            .await,
        Some(on_a as f64)
    );
}
