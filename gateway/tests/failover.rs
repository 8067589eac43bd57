//! Acceptance tests of the gateway core against real processes: the
//! `gateway` binary and two demo twin nodes on ephemeral loopback ports.

use devtools::harness::gateway::*;
use std::time::{Duration, Instant};

fn share_of(outcomes: &[Outcome], node: &str) -> f64 {
    outcomes.iter().filter(|o| o.node == node).count() as f64 / outcomes.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn active_standby_sends_every_request_to_the_primary() {
    let (dir, a, b) = twins("as");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let out = load(gw.url("/whoami"), 4, Duration::from_secs(30), 100).await;
    assert_eq!(out.len(), 400);
    assert!(
        out.iter().all(|o| o.ok && o.node == "a"),
        "{}",
        summary(&out)
    );
    assert_eq!(
        gw.metric(r#"twinport_node_role{node="a",role="primary"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric(r#"twinport_node_role{node="b",role="standby"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric(r#"twinport_requests_total{code_class="2xx",node="a"}"#)
            .await,
        Some(400.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn active_active_splits_by_weight_within_five_percent() {
    let (dir, a, b) = twins("aa");
    let opts = GwOpts {
        mode: "active-active",
        weights: [70, 30],
        ..GwOpts::default()
    };
    let gw = Gateway::start(&dir, &[&a, &b], &opts);
    let out = load(gw.url("/whoami"), 4, Duration::from_secs(60), 500).await;
    assert_eq!(out.len(), 2000);
    assert!(out.iter().all(|o| o.ok), "{}", summary(&out));
    let share = share_of(&out, "a");
    assert!(
        (share - 0.70).abs() <= 0.05,
        "node a got {share:.3} of 2000 requests, want 0.70 ± 0.05"
    );
    assert_eq!(
        gw.metric(r#"twinport_node_role{node="b",role="active"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_primary_under_load_fails_no_request() {
    let (dir, mut a, b) = twins("kill");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let load = tokio::spawn(load(
        gw.url("/whoami"),
        8,
        Duration::from_millis(2500),
        20_000,
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = Instant::now();
    a.crash();
    let out = load.await.unwrap();

    let failed = out.iter().filter(|o| !o.ok).count();
    assert_eq!(failed, 0, "{}", summary(&out));
    let max = out.iter().map(|o| o.latency).max().unwrap();
    assert!(
        max < Duration::from_secs(1),
        "slowest request {max:?}; {}",
        summary(&out)
    );
    let after = out.iter().filter(|o| o.at > killed_at).count();
    assert!(
        after > 100,
        "the load went on after the kill: {after} requests"
    );
    assert!(out
        .iter()
        .filter(|o| o.at > killed_at + Duration::from_millis(50))
        .all(|o| o.node == "b"));
    assert_eq!(
        gw.metric(r#"twinport_node_role{node="b",role="primary"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(gw.metric(r#"twinport_node_up{node="a"}"#).await, Some(0.0));
    assert_eq!(
        gw.metric(r#"twinport_failovers_total{reason="passive"}"#)
            .await,
        Some(1.0)
    );
    let log = gw.log_text();
    assert!(log.contains("failover: primary role moved"), "{log}");
    assert!(
        log.contains("connect refused") || log.contains("connection reset"),
        "{log}"
    );
    println!("kill -9: {}", summary(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigstop_of_the_primary_is_detected_in_time_and_no_get_fails() {
    let (dir, a, b) = twins("stop");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    // 20 connections of slow-ish GETs: some are always in flight on a.
    let load = tokio::spawn(load(
        gw.url("/slow?ms=30"),
        20,
        Duration::from_millis(3000),
        10_000,
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stopped_at = Instant::now();
    a.signal("STOP");
    let mut detected = None;
    while stopped_at.elapsed() < Duration::from_secs(3) {
        if gw
            .metric(r#"twinport_node_role{node="b",role="primary"}"#)
            .await
            == Some(1.0)
        {
            detected = Some(stopped_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = load.await.unwrap();
    a.signal("CONT");

    // Defaults: interval 250 ms, timeout 250 ms, fall 2 → at most 750 ms.
    let bound = Duration::from_millis(750);
    let detected = detected.expect("failover to b");
    // The issue's bound is 1 s with the defaults; the metric is polled every
    // 10 ms on a loaded two-core machine, hence the margin over 750 ms.
    assert!(
        detected <= Duration::from_secs(1),
        "detected after {detected:?}, bound {bound:?}"
    );
    let failed = out.iter().filter(|o| !o.ok).count();
    assert_eq!(failed, 0, "{}", summary(&out));
    // Requests caught on the hung node are cut at detection and answered by
    // the twin: none waits much longer than the detection bound.
    let max = out.iter().map(|o| o.latency).max().unwrap();
    assert!(
        max <= bound + Duration::from_millis(500),
        "slowest {max:?}; {}",
        summary(&out)
    );
    let cut = gw
        .metric(r#"twinport_sessions_cut_total{node="a"}"#)
        .await
        .unwrap_or(0.0);
    let retried = gw
        .metric(r#"twinport_retries_total{reason="node_down"}"#)
        .await
        .unwrap_or(0.0);
    assert!(cut >= 1.0 && retried >= 1.0, "cut {cut}, retried {retried}");
    assert_eq!(
        gw.metric(r#"twinport_failovers_total{reason="health_check"}"#)
            .await,
        Some(1.0)
    );
    println!(
        "SIGSTOP: detected after {detected:?}, {cut} requests cut and retried; {}",
        summary(&out)
    );
}

async fn fail_primary_and_bring_it_back(gw: &Gateway, a: &mut Node) {
    a.crash();
    assert!(
        gw.wait_metric(
            r#"twinport_node_role{node="b",role="primary"}"#,
            1.0,
            Duration::from_secs(3)
        )
        .await,
        "failover to b"
    );
    a.restart();
    assert!(
        gw.wait_metric(r#"twinport_node_up{node="a"}"#, 1.0, Duration::from_secs(3))
            .await,
        "a healthy again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_preemptive_failback_keeps_traffic_on_the_new_primary() {
    let (dir, mut a, b) = twins("nopreempt");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    fail_primary_and_bring_it_back(&gw, &mut a).await;
    // Well past any hold-down a preemptive setup would use here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = load(gw.url("/whoami"), 2, Duration::from_secs(10), 50).await;
    assert!(
        out.iter().all(|o| o.ok && o.node == "b"),
        "{}",
        summary(&out)
    );
    assert_eq!(
        gw.metric(r#"twinport_node_role{node="a",role="standby"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preemptive_failback_returns_after_the_hold_down() {
    let (dir, mut a, b) = twins("preempt");
    let opts = GwOpts {
        preempt: true,
        hold_down: "1500ms",
        ..GwOpts::default()
    };
    let gw = Gateway::start(&dir, &[&a, &b], &opts);
    fail_primary_and_bring_it_back(&gw, &mut a).await;
    let back_at = Instant::now();
    // Not before the hold-down...
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        gw.metric(r#"twinport_node_role{node="b",role="primary"}"#)
            .await,
        Some(1.0)
    );
    // ...but soon after it.
    assert!(
        gw.wait_metric(
            r#"twinport_node_role{node="a",role="primary"}"#,
            1.0,
            Duration::from_secs(3)
        )
        .await,
        "a takes the role back"
    );
    assert!(
        back_at.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        back_at.elapsed()
    );
    let out = load(gw.url("/whoami"), 2, Duration::from_secs(10), 25).await;
    assert!(
        out.iter().all(|o| o.ok && o.node == "a"),
        "{}",
        summary(&out)
    );
    // The failback is planned: only the failover was counted.
    let passive = gw
        .metric(r#"twinport_failovers_total{reason="passive"}"#)
        .await;
    let checks = gw
        .metric(r#"twinport_failovers_total{reason="health_check"}"#)
        .await;
    assert_eq!(passive.unwrap_or(0.0) + checks.unwrap_or(0.0), 1.0);
    assert_eq!(
        gw.metric(r#"twinport_failovers_total{reason="failback"}"#)
            .await,
        None
    );
    assert!(gw.log_text().contains("failback"));
    // Every role change is counted, planned ones under their own cause.
    assert_eq!(
        gw.metric(r#"twinport_role_changes_total{reason="failback"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric(r#"twinport_role_changes_total{reason="initial"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_nodes_down_answers_503_with_retry_after_in_html_or_json() {
    let (dir, mut a, mut b) = twins("bothdown");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    a.crash();
    b.crash();
    assert!(
        gw.wait_metric(r#"twinport_node_up{node="b"}"#, 0.0, Duration::from_secs(3))
            .await
    );
    let client = reqwest::Client::new();
    let r = client
        .get(gw.url("/"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "service_unavailable");
    let r = client
        .get(gw.url("/"))
        .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("<h1>"));
    assert!(
        gw.metric(r#"twinport_requests_total{code_class="5xx",node="none"}"#)
            .await
            >= Some(2.0)
    );
    // A node coming back serves again without a gateway restart.
    b.restart();
    assert!(
        gw.wait_metric(r#"twinport_node_up{node="b"}"#, 1.0, Duration::from_secs(3))
            .await
    );
    let r = client.get(gw.url("/whoami")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_whose_node_dies_after_receiving_it_is_not_replayed() {
    let (dir, mut a, b) = twins("post");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let client = reqwest::Client::new();
    let post = tokio::spawn(
        client
            .post(gw.url("/record?id=order-1&ms=3000"))
            .body("payload")
            .send(),
    );
    // Wait until node a has durably seen the request, then crash it.
    assert!(devtools::eventually(Duration::from_secs(5), || a.journal() == ["order-1"]));
    a.crash();
    let r = post.await.unwrap().expect("the gateway answers");
    assert_eq!(r.status(), 502, "the POST fails rather than being replayed");
    // An idempotent request in the same situation would be retried; this one
    // must never reach the twin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.journal().is_empty(), "node b saw {:?}", b.journal());
    // A POST that could not connect at all is safe to send to the twin.
    let r = client
        .post(gw.url("/record?id=order-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(b.journal(), ["order-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_with_an_idempotency_key_whose_node_dies_is_replayed_on_the_twin() {
    let (dir, mut a, b) = twins("post-key");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let post = tokio::spawn(
        reqwest::Client::new()
            .post(gw.url("/record?id=ticket-1&ms=3000"))
            .header("idempotency-key", "kiosk-7-press-1")
            .body("payload")
            .send(),
    );
    assert!(devtools::eventually(Duration::from_secs(5), || a.journal() == ["ticket-1"]));
    a.crash();
    // The key makes the replay safe: the twin answers.
    let r = post.await.unwrap().expect("the gateway answers");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-twinport-node"], "b");
    assert_eq!(b.journal(), ["ticket-1"]);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consecutive_5xx_answers_eject_the_node_and_checks_bring_it_back() {
    let (dir, a, b) = twins("5xx");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let client = reqwest::Client::new();
    // 5xx answers are passed through, not retried...
    for i in 0..4 {
        let r = client.get(gw.url("/status/500")).send().await.unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(r.headers()["x-twinport-node"], "a", "answer {i}");
    }
    // ...a success in between resets the count...
    let r = client.get(gw.url("/whoami")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "a");
    assert_eq!(gw.metric(r#"twinport_node_up{node="a"}"#).await, Some(1.0));
    // ...and the fifth in a row (the default error_limit) ejects the node.
    for _ in 0..5 {
        client.get(gw.url("/status/503")).send().await.unwrap();
    }
    assert!(
        gw.wait_metric(
            r#"twinport_node_role{node="b",role="primary"}"#,
            1.0,
            Duration::from_secs(1)
        )
        .await
    );
    assert_eq!(
        gw.metric(r#"twinport_failovers_total{reason="passive"}"#)
            .await,
        Some(1.0)
    );
    assert!(
        gw.log_text()
            .contains("5 consecutive errors, last: status_5xx"),
        "{}",
        gw.log_text()
    );
    // Its readiness checks still pass, so it is back up (as standby) after `rise`.
    assert!(
        gw.wait_metric(r#"twinport_node_up{node="a"}"#, 1.0, Duration::from_secs(2))
            .await
    );
    let r = client.get(gw.url("/whoami")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "b");
}

/// A listener whose accept queue is full: the next connection's SYN is
/// dropped (and resent only after a second), so connecting times out.
/// Returns the listener and the connections that fill its queue.
fn listener_with_a_full_queue() -> (tokio::net::TcpListener, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = vec![];
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => fillers.push(s),
            Err(_) => return (listener, fillers),
        }
    }
    panic!("the accept queue of a listen(1) socket never filled");
}

/// Answers every connection's first request with `200 b`.
async fn serve_b(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nb")
                .await;
        });
    }
}

/// HAProxy's `retry-on conn-failure`: a connection that could not be made
/// reached nobody, so when the twin is out of service the retry goes back
/// to the serving node instead of answering 503 "no twin node can serve".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connect_timeout_on_the_only_serving_node_is_retried_there() {
    let dir = devtools::TempDir::new("conn-retry");
    let b = Node::start(&dir, "b");
    let (listener, fillers) = listener_with_a_full_queue();
    let nowhere = devtools::free_addr().to_string();
    let targets = [
        ("a".to_string(), nowhere.clone(), nowhere),
        (
            "b".to_string(),
            listener.local_addr().unwrap().to_string(),
            b.agent.to_string(),
        ),
    ];
    let gw = Gateway::start_with(&dir, targets, &GwOpts::default(), "");
    assert!(
        gw.wait_metric(r#"twinport_node_up{node="b"}"#, 1.0, Duration::from_secs(5))
            .await
    );
    let url = gw.url("/whoami");
    let request = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let r = client
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    // The first connect's SYN has been dropped; the queue drains well
    // before its 500 ms connect timeout, so the retry's connect succeeds.
    tokio::time::sleep(Duration::from_millis(150)).await;
    drop(fillers);
    tokio::spawn(serve_b(listener));
    let (status, body) = request.await.unwrap();
    assert_eq!(
        gw.metric(r#"twinport_passive_failures_total{kind="connect_timeout",node="b"}"#)
            .await,
        Some(1.0),
        "the first connect did not time out: the test proves nothing"
    );
    assert_eq!((status, body.as_str()), (200, "b"));
}

/// Both twins become ready in the same round of checks after a start in
/// which neither was (as when `scripts/demo` starts the gateway before its
/// apps are up), b's readiness set first: the configured primary, a, takes
/// the role every time, and the recent transitions name the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twins_ready_in_the_same_round_give_the_role_to_the_configured_primary() {
    for trial in 0..5 {
        let (dir, a, b) = twins(&format!("first-primary-{trial}"));
        let client = reqwest::Client::new();
        let set = |n: &Node, state: &str| {
            client
                .post(format!("http://{}/_demo/state/{state}", n.agent))
                .send()
        };
        set(&a, "starting").await.unwrap();
        set(&b, "starting").await.unwrap();
        let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
        let (_, s) = gw.admin_call("GET", "/v1/status", None).await;
        assert_eq!(s["primary"], serde_json::Value::Null, "{s}");
        set(&b, "ready").await.unwrap();
        set(&a, "ready").await.unwrap();
        let s = gw
            .wait_status(Duration::from_secs(5), |s| {
                let both_up = s["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|n| n["health"] == "up");
                both_up && !s["primary"].is_null()
            })
            .await;
        assert_eq!(s["primary"], "a", "trial {trial}: {s}");
        let first = s["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["event"].as_str().unwrap().starts_with("primary"))
            .cloned()
            .unwrap();
        assert_eq!(first["node"], "a", "{first}");
        assert_eq!(
            gw.metric(r#"twinport_failovers_total{reason="health_check"}"#)
                .await,
            Some(0.0)
        );
    }
}
