//! The API over real sockets: a visit from kiosk to desk, bookings, live
//! board events, and bad input of every kind answered with a clear 4xx
//! JSON error and no change.

use devtools::harness::ticketing::*;
use devtools::TempDir;
use serde_json::Value;
use std::time::{Duration, Instant};

const B: &str = "/api/v1/branches/centrum";

/// A desk's action in branch centrum.
async fn desk(
    c: &reqwest::Client,
    t: &Ticketing,
    desk: &str,
    action: &str,
    body: Option<&str>,
) -> (u16, Value) {
    call(
        c,
        "POST",
        &t.url(&format!("{B}/desks/{desk}/{action}")),
        Some(DESK),
        None,
        body,
    )
    .await
}

/// Branch centrum's statistics (manager token).
async fn branch_stats(c: &reqwest::Client, t: &Ticketing) -> Value {
    call(
        c,
        "GET",
        &t.url(&format!("{B}/stats")),
        Some(MANAGER),
        None,
        None,
    )
    .await
    .1
}

/// A kiosk's request for a ticket in branch centrum, with its key.
async fn kiosk(c: &reqwest::Client, t: &Ticketing, key: &str, body: &str) -> (u16, Value) {
    call(
        c,
        "POST",
        &t.url(&format!("{B}/tickets")),
        Some(KIOSK),
        Some(key),
        Some(body),
    )
    .await
}

/// What a bad request must not change: the board and the statistics.
async fn state(c: &reqwest::Client, t: &Ticketing) -> (Value, Value) {
    (board(c, t).await, branch_stats(c, t).await)
}

async fn board(c: &reqwest::Client, t: &Ticketing) -> Value {
    call(c, "GET", &t.url(&format!("{B}/board")), None, None, None)
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_from_kiosk_to_desk_and_a_booking_check_in() {
    let dir = TempDir::new("tk-visit");
    let t = Ticketing::start(&dir, "a", None);
    let c = reqwest::Client::new();
    let issue = |service: &str| format!(r#"{{"service":"{service}"}}"#);

    // Kiosk: A001, then A002 with a priority group; the same key replays.
    let (s, a1) = kiosk(&c, &t, "k-1", &issue("A")).await;
    assert_eq!((s, a1["display"].as_str()), (201, Some("A001")), "{a1}");
    assert_eq!(a1["position"], 0);
    let (s, again) = kiosk(&c, &t, "k-1", &issue("A")).await;
    assert_eq!(
        (s, &again["id"]),
        (200, &a1["id"]),
        "a replay returns the first ticket"
    );
    // The same key for another request is a client's mistake, not a replay.
    let (s, reused) = kiosk(&c, &t, "k-1", &issue("B")).await;
    assert_eq!(
        (s, reused["error"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{reused}"
    );
    let (_, a2) = kiosk(
        &c,
        &t,
        "k-2",
        r#"{"service":"A","priority_group":"disabled"}"#,
    )
    .await;
    assert_eq!(a2["display"], "A002");
    let (_, a3) = kiosk(&c, &t, "k-3", &issue("A")).await;
    assert_eq!(a3["position"], 2, "{a3}");
    assert!(a3["tracking_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/t/{}", a3["id"].as_str().unwrap())));
    let qr = c
        .get(t.url(&format!(
            "/api/v1/tickets/{}/qr.svg",
            a3["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert!(qr.text().await.unwrap().contains("<svg"));

    // A live board: the desk's call reaches it as an event within 1 s.
    let mut events = c
        .get(t.url(&format!("{B}/board/events")))
        .send()
        .await
        .unwrap();
    let first = next_event(&mut events).await;
    assert!(first.contains("event: board"), "{first}");
    let called_at = Instant::now();
    let (s, called) = desk(&c, &t, "1", "call-next", None).await;
    assert_eq!(s, 200, "{called}");
    // The priority group's 15 min count as waiting: A002 goes first.
    assert_eq!(called["called"]["display"], "A002");
    let ev = loop {
        let ev = next_event(&mut events).await;
        if ev.contains("A002") {
            break ev;
        }
    };
    assert!(
        called_at.elapsed() < Duration::from_secs(1),
        "the board heard of the call after {:?}",
        called_at.elapsed()
    );
    assert!(ev.contains(r#""desk":"1""#), "{ev}");

    // Desk: a second call while A002 is open is refused; recall, start, finish.
    let (s, v) = desk(&c, &t, "1", "call-next", None).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("still has A002"));
    for (action, status) in [
        ("recall", "called"),
        ("start", "serving"),
        ("finish", "done"),
    ] {
        let (s, v) = desk(&c, &t, "1", action, None).await;
        assert_eq!(
            (s, v["status"].as_str()),
            (200, Some(status)),
            "{action}: {v}"
        );
    }
    // A001 is called, then transferred to service C keeping its waiting
    // time; desk 2 (B, C) calls it before a newer C ticket.
    let (_, c1) = kiosk(&c, &t, "k-4", &issue("C")).await;
    let (_, v) = desk(&c, &t, "1", "call-next", None).await;
    assert_eq!(v["called"]["display"], "A001");
    let (s, v) = desk(&c, &t, "1", "transfer", Some(r#"{"service":"C"}"#)).await;
    assert_eq!(
        (s, v["service"].as_str(), v["status"].as_str()),
        (200, Some("C"), Some("waiting")),
        "{v}"
    );
    let (_, v) = desk(&c, &t, "2", "call-next", None).await;
    assert_eq!(
        v["called"]["display"], "A001",
        "the transferred ticket kept its place: {v}"
    );
    let (_, v) = desk(&c, &t, "2", "no-show", None).await;
    assert_eq!(v["status"], "no_show");
    let (_, v) = desk(&c, &t, "2", "call-next", None).await;
    assert_eq!(v["called"]["display"], c1["display"]);

    // Tracking shows the state.
    let (_, tr) = call(
        &c,
        "GET",
        &t.url(&format!("/api/v1/tickets/{}", a2["id"].as_str().unwrap())),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(tr["status"], "done");

    // Bookings: created by the manager, checked in at the kiosk by code.
    let slot = chrono_now_rfc3339();
    let (s, bk) = call(
        &c,
        "POST",
        &t.url(&format!("{B}/bookings")),
        Some(MANAGER),
        None,
        Some(&format!(r#"{{"service":"B","slot":"{slot}"}}"#)),
    )
    .await;
    assert_eq!(s, 201, "{bk}");
    let code = bk["code"].as_str().unwrap();
    let (s, b1) = kiosk(
        &c,
        &t,
        "k-5",
        &format!(r#"{{"booking_code":"{}"}}"#, code.to_lowercase()),
    )
    .await;
    assert_eq!((s, b1["display"].as_str()), (201, Some("B001")), "{b1}");
    let (s, v) = kiosk(&c, &t, "k-6", &format!(r#"{{"booking_code":"{code}"}}"#)).await;
    assert_eq!(s, 409, "a second check-in: {v}");
    // The booked visitor goes ahead of the older walk-in A003 at desk 1.
    let (_, v) = desk(&c, &t, "1", "call-next", None).await;
    assert_eq!(v["called"]["display"], "B001", "{v}");

    let stats = branch_stats(&c, &t).await;
    let a = &stats["services"][0];
    assert_eq!(
        (
            a["issued"].as_u64(),
            a["served"].as_u64(),
            a["no_shows"].as_u64()
        ),
        (Some(3), Some(1), Some(0)),
        "{stats}"
    );
    // A001 was transferred to C and did not come: a no-show of C.
    assert_eq!(stats["services"][2]["no_shows"], 1, "{stats}");
    let metrics = t.metrics_text().await;
    assert!(
        metrics.contains(
            r#"twinport_ticketing_tickets_issued_total{branch="centrum",service="A",node="a"} 3"#
        ),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"twinport_ticketing_no_shows_total{branch="centrum",service="C",node="a"} 1"#));
    // Nothing personal on a board: numbers and desks only.
    let b = board(&c, &t).await;
    for call in b["calls"].as_array().unwrap() {
        let keys: Vec<&String> = call.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["called_at", "desk", "display", "recalls", "status"]);
    }
}

/// A desk's press sent again with its key (a retry after a failover)
/// acts once: the visitor it called is not skipped.
#[tokio::test]
async fn a_desk_press_repeated_with_its_key_acts_once() {
    let dir = TempDir::new("tk-desk-key");
    let t = Ticketing::start(&dir, "a", None);
    let c = reqwest::Client::new();
    for k in ["k-1", "k-2"] {
        let (s, v) = kiosk(&c, &t, k, r#"{"service":"A"}"#).await;
        assert_eq!(s, 201, "{v}");
    }
    let press = |action: &'static str, key: &'static str| {
        let c = c.clone();
        let url = t.url(&format!("{B}/desks/1/{action}"));
        async move { call(&c, "POST", &url, Some(DESK), Some(key), None).await }
    };
    let (s, first) = press("call-next", "press-1").await;
    assert_eq!(
        (s, first["called"]["display"].as_str()),
        (200, Some("A001")),
        "{first}"
    );
    // Without the key this would be 409 (the desk still has A001).
    let (s, again) = press("call-next", "press-1").await;
    assert_eq!(
        (s, &again["called"]["id"]),
        (200, &first["called"]["id"]),
        "{again}"
    );
    let (s, done) = press("finish", "press-2").await;
    assert_eq!((s, done["status"].as_str()), (200, Some("done")), "{done}");
    let (s, again) = press("finish", "press-2").await;
    assert_eq!((s, &again["id"]), (200, &done["id"]), "{again}");
    let (s, next) = press("call-next", "press-3").await;
    assert_eq!(
        (s, next["called"]["display"].as_str()),
        (200, Some("A002")),
        "{next}"
    );
    // A kiosk's key of the same text is another key: a new ticket.
    let (s, v) = kiosk(&c, &t, "press-1", r#"{"service":"A"}"#).await;
    assert_eq!((s, v["display"].as_str()), (201, Some("A003")), "{v}");
    // A replay says so, and is not counted as another call.
    let r = c
        .post(t.url(&format!("{B}/desks/1/call-next")))
        .bearer_auth(DESK)
        .header("idempotency-key", "press-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let metrics = t.metrics_text().await;
    let calls = metrics
        .lines()
        .find(|l| l.starts_with("twinport_ticketing_calls_total{") && l.contains(r#"desk="1""#))
        .unwrap_or_default()
        .to_string();
    assert!(calls.ends_with(" 2"), "two calls, not four: {calls}");
}

/// Transfer, open and close with a key act once too: the gateway replays
/// them on the twin after a failover, and a replay answers as the first
/// did (no 409 for a transfer that worked). The same key with another
/// body is refused.
#[tokio::test]
async fn transfer_open_and_close_replayed_with_their_key_act_once() {
    let dir = TempDir::new("tk-desk-replay");
    let t = Ticketing::start(&dir, "a", None);
    let c = reqwest::Client::new();
    let press = |desk: &'static str,
                 action: &'static str,
                 key: &'static str,
                 body: Option<&'static str>| {
        let c = c.clone();
        let url = t.url(&format!("{B}/desks/{desk}/{action}"));
        async move {
            let mut r = c
                .post(&url)
                .bearer_auth(DESK)
                .header("idempotency-key", key);
            if let Some(b) = body {
                r = r.header("content-type", "application/json").body(b);
            }
            let resp = r.send().await.unwrap();
            let replayed = resp.headers().get("idempotent-replayed").is_some();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap(), replayed)
        }
    };
    let (s, opened, replayed) = press("2", "open", "open-2", None).await;
    assert_eq!(
        (s, &opened["open"], replayed),
        (200, &Value::Bool(true), false),
        "{opened}"
    );
    let (s, again, replayed) = press("2", "open", "open-2", None).await;
    assert_eq!((s, again, replayed), (200, opened, true));
    kiosk(&c, &t, "tr-1", r#"{"service":"A"}"#).await;
    press("1", "call-next", "call-1", None).await;
    let to_desk_2 = Some(r#"{"desk":"2"}"#);
    let (s, moved, replayed) = press("1", "transfer", "tr-press", to_desk_2).await;
    assert_eq!(
        (s, moved["status"].as_str(), replayed),
        (200, Some("waiting"), false),
        "{moved}"
    );
    // Without the key this would be 409: desk 1 has no ticket any more.
    let (s, again, replayed) = press("1", "transfer", "tr-press", to_desk_2).await;
    assert_eq!(
        (s, &again["id"], &again["status"], replayed),
        (200, &moved["id"], &moved["status"], true),
        "{again}"
    );
    // The same key for another request: 422, nothing done.
    let (s, v, _) = press("1", "transfer", "tr-press", Some(r#"{"service":"B"}"#)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{v}"
    );
    let (s, v, _) = press("2", "close", "open-2", None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{v}"
    );
    // Closing desk 2 sends the transferred ticket back to A's queue.
    let (s, closed, replayed) = press("2", "close", "close-2", None).await;
    assert_eq!(
        (s, &closed["open"], replayed),
        (200, &Value::Bool(false), false),
        "{closed}"
    );
    let (s, again, replayed) = press("2", "close", "close-2", None).await;
    assert_eq!((s, again, replayed), (200, closed, true));
    let (s, v) = desk(&c, &t, "1", "call-next", None).await;
    assert_eq!((s, &v["called"]["id"]), (200, &moved["id"]), "{v}");
}

fn chrono_now_rfc3339() -> String {
    let now = std::time::SystemTime::now();
    humantime::format_rfc3339_seconds(now).to_string()
}

async fn next_event(r: &mut reqwest::Response) -> String {
    let mut buf = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .expect("the stream goes on");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        if buf.contains("\n\n") {
            return buf;
        }
    }
}

/// Method, path, token, body, expected status, expected text in the message.
type Case<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    Option<String>,
    u16,
    &'a str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let dir = TempDir::new("tk-bad");
    let t = Ticketing::start(&dir, "a", None);
    let c = reqwest::Client::new();
    // One ticket and one booking for tomorrow exist beforehand.
    kiosk(&c, &t, "k-0", r#"{"service":"A"}"#).await;
    let tomorrow = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(36 * 3600),
    )
    .to_string();
    let (_, bk) = call(
        &c,
        "POST",
        &t.url(&format!("{B}/bookings")),
        Some(MANAGER),
        None,
        Some(&format!(r#"{{"service":"A","slot":"{tomorrow}"}}"#)),
    )
    .await;
    let code = bk["code"].as_str().unwrap().to_string();
    let before = state(&c, &t).await;

    let big = format!(r#"{{"service":"{}"}}"#, "A".repeat(20_000));
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/branches/nowhere/tickets".into(),
            Some(KIOSK),
            Some(r#"{"service":"A"}"#.into()),
            404,
            "no branch `nowhere`",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(KIOSK),
            Some(r#"{"service":"Z"}"#.into()),
            422,
            "has no service `Z`",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(KIOSK),
            Some(r#"{"service":"A","priority_group":"vip"}"#.into()),
            422,
            "no priority group `vip`",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(KIOSK),
            Some(r#"{"booking_code":"NOSUCH99"}"#.into()),
            404,
            "no booking with code NOSUCH99",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(KIOSK),
            Some(format!(r#"{{"booking_code":"{code}"}}"#)),
            422,
            "not today",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(KIOSK),
            Some(r#"{"service":"A","booking_code":"X"}"#.into()),
            422,
            "either `service` or `booking_code`",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(OTHER_KIOSK),
            Some(r#"{"service":"A"}"#.into()),
            403,
            "may not do that in branch `centrum`",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(DESK),
            Some(r#"{"service":"A"}"#.into()),
            403,
            "may not do that",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            None,
            Some(r#"{"service":"A"}"#.into()),
            401,
            "a valid bearer token",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some("wrong-token-0123456789"),
            Some(r#"{"service":"A"}"#.into()),
            401,
            "a valid bearer token",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(KIOSK),
            Some(r#"{"service":"#.into()),
            400,
            "not the expected JSON",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(KIOSK),
            Some(r#"{"service":"A","name":"Jan Kowalski"}"#.into()),
            400,
            "unknown field `name`",
        ),
        (
            "POST",
            format!("{B}/tickets"),
            Some(KIOSK),
            Some(big),
            413,
            "",
        ),
        (
            "POST",
            format!("{B}/desks/9/call-next"),
            Some(DESK),
            None,
            404,
            "no desk `9`",
        ),
        (
            "POST",
            format!("{B}/desks/1/teleport"),
            Some(DESK),
            None,
            404,
            "no desk action `teleport`",
        ),
        (
            "POST",
            format!("{B}/desks/1/finish"),
            Some(DESK),
            None,
            409,
            "has no called ticket",
        ),
        (
            "POST",
            format!("{B}/desks/1/call-next"),
            Some(KIOSK),
            None,
            403,
            "may not do that",
        ),
        (
            "POST",
            format!("{B}/bookings"),
            Some(MANAGER),
            Some(r#"{"service":"A","slot":"tomorrow at ten"}"#.into()),
            422,
            "not an RFC 3339 time",
        ),
        (
            "POST",
            format!("{B}/bookings"),
            Some(KIOSK),
            Some(format!(r#"{{"service":"A","slot":"{tomorrow}"}}"#)),
            403,
            "may not do that",
        ),
        (
            "DELETE",
            format!("{B}/bookings/NOSUCH99"),
            Some(MANAGER),
            None,
            404,
            "no booking with code NOSUCH99",
        ),
        (
            "GET",
            format!("{B}/stats?day=yesterday"),
            Some(MANAGER),
            None,
            422,
            "not YYYY-MM-DD",
        ),
        (
            "GET",
            "/api/v1/tickets/nosuch".into(),
            None,
            None,
            404,
            "no ticket `nosuch`",
        ),
    ];
    for (method, path, token, body, status, text) in cases {
        let mut r = c
            .request(method.parse().unwrap(), t.url(&path))
            .header("idempotency-key", format!("bad-{path}-{status}"));
        if let Some(tok) = token {
            r = r.bearer_auth(tok);
        }
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        if status != 413 {
            assert!(
                resp.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "{method} {path}"
            );
            let v: Value = resp.json().await.unwrap();
            assert!(
                v["message"].as_str().unwrap_or("").contains(text),
                "{method} {path}: {v}"
            );
            assert!(v["error"].is_string());
        }
    }
    let bad_key = c
        .post(t.url(&format!("{B}/tickets")))
        .bearer_auth(KIOSK)
        .header("idempotency-key", "x".repeat(200))
        .body(r#"{"service":"A"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status().as_u16(), 400);
    let after = state(&c, &t).await;
    assert_eq!(before, after, "no bad request changed anything");
    // The booking for tomorrow is still there, unused.
    let (s, _) = call(
        &c,
        "DELETE",
        &t.url(&format!("{B}/bookings/{code}")),
        Some(MANAGER),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    // A malformed config: refused with file, line and field.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&t.config)
            .unwrap()
            .replace("time_zone: Europe/Warsaw", "time_zone: Europe/Atlantis"),
    )
    .unwrap();
    let (code, err) = devtools::check_config("ticketing", &bad);
    assert_eq!(code, Some(64));
    assert!(
        err.contains("bad.yaml: invalid configuration")
            && err.contains("branches[0].time_zone (line 12): `Europe/Atlantis`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_over_its_rate_gets_429_and_other_kiosks_are_served() {
    let dir = TempDir::new("tk-kiosk-rate");
    let t = Ticketing::start_edited(&dir, "a", &|y| {
        y.replace("kiosk_rate_limit: 0", "kiosk_rate_limit: 3")
    });
    let c = reqwest::Client::new();
    let url = t.url(&format!("{B}/tickets"));
    let post = |key: String, real_ip: Option<&'static str>| {
        let mut r = c
            .post(&url)
            .bearer_auth(KIOSK)
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(r#"{"service":"A"}"#);
        if let Some(ip) = real_ip {
            // The test's loopback peer is a trusted proxy (the default).
            r = r.header("x-real-ip", ip);
        }
        r.send()
    };
    let mut codes = Vec::new();
    for i in 0..10 {
        let r = post(format!("greedy-{i}"), Some("192.0.2.10"))
            .await
            .unwrap();
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"], "too_many_requests");
            codes.push(429);
        } else {
            codes.push(r.status().as_u16());
        }
    }
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 7, "{codes:?}");
    // Another kiosk in the same second is served.
    let r = post("polite-1".into(), Some("192.0.2.11")).await.unwrap();
    assert_eq!(r.status(), 201);
    // Only issued tickets exist: three for the greedy kiosk, one polite.
    let stats = branch_stats(&c, &t).await;
    let issued: u64 = stats["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["issued"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(issued, 4, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_forbid_framing_sniffing_and_foreign_scripts() {
    let dir = TempDir::new("tk-page-headers");
    let t = Ticketing::start(&dir, "a", None);
    for page in [
        "/kiosk/centrum",
        "/board/centrum",
        "/desk/centrum/1",
        "/stats/centrum",
    ] {
        let r = reqwest::get(t.url(page)).await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        for want in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(want), "{page}: {csp}");
        }
        assert_eq!(h["x-frame-options"], "DENY", "{page}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{page}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{page}");
    }
}
