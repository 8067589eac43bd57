//! Property tests of the ticketing API's inputs, against the real binary:
//! whatever a client sends — paths, tokens, idempotency keys, bodies —
//! the answer is never a 5xx, every error is JSON with `error` and
//! `message`, and nothing a refused request carried is stored: at the end
//! each service's numbers are exactly 1..n of the tickets that were
//! accepted.

use devtools::harness::ticketing::*;
use devtools::TempDir;
use proptest::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

const B: &str = "/api/v1/branches/centrum";

fn token() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(KIOSK.to_string())),
        Just(Some(DESK.to_string())),
        Just(Some(MANAGER.to_string())),
        Just(Some(OTHER_KIOSK.to_string())),
        "[ -~]{0,40}".prop_map(Some),
    ]
}

fn json_body() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![Just("A"), Just("B"), Just("C"), Just("Z"), Just("")].prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("service".to_string()),
                    Just("booking_code".to_string()),
                    Just("priority_group".to_string()),
                    Just("to".to_string()),
                    Just("slot".to_string()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        value.prop_map(|v| v.to_string()),
        "\\PC{0,60}",
        Just(r#"{"service":"A"}"#.to_string()),
        Just(r#"{"service":"B","priority_group":"disabled"}"#.to_string()),
    ]
}

fn path() -> impl Strategy<Value = (String, String)> {
    let seg = prop_oneof![
        Just("centrum".to_string()),
        Just("other".to_string()),
        Just("1".to_string()),
        Just("2".to_string()),
        "[a-zA-Z0-9%._~-]{0,12}",
    ];
    let action = prop_oneof![
        Just("call-next"),
        Just("recall"),
        Just("start"),
        Just("finish"),
        Just("no-show"),
        Just("transfer"),
        Just("open"),
        Just("close"),
    ];
    prop_oneof![
        Just(("POST".to_string(), format!("{B}/tickets"))),
        (seg.clone()).prop_map(|b| ("POST".to_string(), format!("/api/v1/branches/{b}/tickets"))),
        (seg.clone(), action).prop_map(|(d, a)| ("POST".to_string(), format!("{B}/desks/{d}/{a}"))),
        Just(("POST".to_string(), format!("{B}/bookings"))),
        seg.clone()
            .prop_map(|c| ("DELETE".to_string(), format!("{B}/bookings/{c}"))),
        seg.clone()
            .prop_map(|t| ("GET".to_string(), format!("/api/v1/tickets/{t}"))),
        "[ -~]{0,12}".prop_map(|d| (
            "GET".to_string(),
            format!("{B}/stats?day={}", d.replace(['&', '#', ' '], ""))
        )),
        Just(("GET".to_string(), format!("{B}/board"))),
    ]
}

#[test]
fn no_input_gets_a_5xx_every_error_is_json_and_numbers_stay_contiguous() {
    let dir = TempDir::new("tk-props");
    let t = Ticketing::start(&dir, "a", None);
    let client = reqwest::blocking::Client::new();
    let accepted: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    });
    let strategy = (path(), token(), prop::option::of("\\PC{0,80}"), json_body());
    runner
        .run(&strategy, |((method, path), token, key, body)| {
            let mut req = client
                .request(method.parse().unwrap(), t.url(&path))
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(tok) = &token {
                if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {tok}")) {
                    req = req.header("authorization", v);
                }
            }
            if let Some(k) = &key {
                if let Ok(v) = reqwest::header::HeaderValue::from_str(k) {
                    req = req.header("idempotency-key", v);
                }
            }
            let resp = req.send().expect("the service answers");
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let text = resp.text().unwrap_or_default();
            prop_assert!(status < 500, "{method} {path} {body:?} → {status}: {text}");
            if status >= 400 {
                prop_assert!(
                    ctype.starts_with("application/json"),
                    "{status} {ctype}: {text}"
                );
                let v: Value = serde_json::from_str(&text).expect("a JSON error");
                prop_assert!(v["error"].is_string() && v["message"].is_string(), "{text}");
            }
            if status < 300 && path.ends_with("/tickets") && method == "POST" {
                let v: Value = serde_json::from_str(&text).expect("a ticket");
                accepted
                    .lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap_or("").to_string());
            }
            Ok(())
        })
        .unwrap();
    // The service still serves, and every accepted ticket is numbered
    // without gap or double in its service.
    let board = client.get(t.url(&format!("{B}/board"))).send().unwrap();
    assert_eq!(board.status(), 200);
    let mut numbers: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let accepted = accepted.into_inner().unwrap();
    let unique: std::collections::BTreeSet<&String> = accepted.iter().collect();
    for id in &unique {
        let v: Value = client
            .get(t.url(&format!("/api/v1/tickets/{id}")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let number = v["display"].as_str().unwrap_or("").to_string();
        let (prefix, n) = number.split_at(number.find(|c: char| c.is_ascii_digit()).unwrap_or(0));
        // Numbers restart per branch and service.
        numbers
            .entry(format!("{} {prefix}", v["branch"].as_str().unwrap_or("")))
            .or_default()
            .push(n.parse().unwrap_or(0));
    }
    for (service, mut n) in numbers {
        n.sort_unstable();
        assert_eq!(
            n,
            (1..=n.len() as u64).collect::<Vec<_>>(),
            "service {service}"
        );
    }
    println!(
        "{} tickets accepted among 400 random requests",
        unique.len()
    );
}
