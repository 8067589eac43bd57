//! The OpenAPI document against the real service: every answer of a
//! visit from kiosk to desk, bookings, statistics and the usual errors is
//! checked against the schema the document gives for that path, method
//! and status (JSON Schema, with every documented object closed: a field
//! the document does not name fails too). A status the document does not
//! list for the path fails.

use devtools::harness::ticketing::*;
use devtools::TempDir;
use serde_json::{json, Value};

const B: &str = "/api/v1/branches/centrum";

/// The document, with `additionalProperties: false` on every object
/// schema that lists its properties (maps keep theirs).
fn strict(mut doc: Value) -> Value {
    fn close(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if o.get("type") == Some(&json!("object")) && o.contains_key("properties") {
                    o.entry("additionalProperties").or_insert(json!(false));
                }
                o.values_mut().for_each(close);
            }
            Value::Array(a) => a.iter_mut().for_each(close),
            _ => {}
        }
    }
    close(&mut doc["components"]);
    doc
}

struct Checker {
    doc: Value,
    c: reqwest::Client,
    base: String,
    checked: Vec<String>,
}

impl Checker {
    /// Calls `method path` and checks the answer against the document's
    /// `template` path; returns the status and body.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, value) = call(
            &self.c,
            method,
            &format!("{}{path}", self.base),
            token,
            key,
            body,
        )
        .await;
        let op = &self.doc["paths"][template][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let answer = &op["responses"][status.to_string()];
        assert!(
            answer.is_object(),
            "{method} {path} answered {status}, which the document does not list: {value}"
        );
        let schema = &answer["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {status}: no JSON schema documented"
        );
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| {
            panic!("{method} {template} {status}: the schema does not compile: {e}")
        });
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match its documented schema:\n  {}\nbody: {value}",
            errors.join("\n  ")
        );
        self.checked.push(format!("{method} {template} {status}"));
        (status, value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_its_documented_schema() {
    let dir = TempDir::new("openapi");
    let t = Ticketing::start(&dir, "a", None);
    let c = reqwest::Client::new();
    let (status, doc) = call(&c, "GET", &t.url("/api/v1/openapi.json"), None, None, None).await;
    assert_eq!(status, 200);
    let mut k = Checker {
        doc: strict(doc),
        c,
        base: t.url(""),
        checked: Vec::new(),
    };
    let desk = |a: &str| format!("{B}/desks/1/{a}");
    let desk_t = |a: &str| format!("/api/v1/branches/{{branch}}/desks/{{desk}}/{a}");
    let branch_t = "/api/v1/branches/{branch}";

    k.call("GET", "/ready", "/ready", None, None, None).await;
    k.call("GET", "/live", "/live", None, None, None).await;
    k.call("GET", branch_t, B, None, None, None).await;
    k.call(
        "GET",
        "/api/v1/branches/{branch}",
        "/api/v1/branches/nowhere",
        None,
        None,
        None,
    )
    .await;
    k.call(
        "GET",
        &format!("{branch_t}/board"),
        &format!("{B}/board"),
        None,
        None,
        None,
    )
    .await;

    // Nobody waits yet: call-next answers `called: null`.
    k.call(
        "POST",
        &desk_t("open"),
        &desk("open"),
        Some(DESK),
        Some("o1"),
        None,
    )
    .await;
    let (_, none) = k
        .call(
            "POST",
            &desk_t("call-next"),
            &desk("call-next"),
            Some(DESK),
            None,
            None,
        )
        .await;
    assert!(none["called"].is_null(), "{none}");

    // A kiosk issues two tickets (and replays the first).
    let tickets_t = format!("{branch_t}/tickets");
    let tickets = format!("{B}/tickets");
    let issue = r#"{"service":"A"}"#;
    let (s, first) = k
        .call(
            "POST",
            &tickets_t,
            &tickets,
            Some(KIOSK),
            Some("k1"),
            Some(issue),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = k
        .call(
            "POST",
            &tickets_t,
            &tickets,
            Some(KIOSK),
            Some("k1"),
            Some(issue),
        )
        .await;
    assert_eq!(s, 200);
    k.call(
        "POST",
        &tickets_t,
        &tickets,
        Some(KIOSK),
        Some("k2"),
        Some(r#"{"service":"A","priority_group":"disabled"}"#),
    )
    .await;
    // Errors: no token, a desk's token, an unknown service, a reused key.
    k.call("POST", &tickets_t, &tickets, None, None, Some(issue))
        .await;
    k.call("POST", &tickets_t, &tickets, Some(DESK), None, Some(issue))
        .await;
    k.call(
        "POST",
        &tickets_t,
        &tickets,
        Some(KIOSK),
        None,
        Some(r#"{"service":"Z"}"#),
    )
    .await;
    k.call(
        "POST",
        &tickets_t,
        &tickets,
        Some(KIOSK),
        Some("k1"),
        Some(r#"{"service":"B"}"#),
    )
    .await;
    k.call(
        "POST",
        &tickets_t,
        &tickets,
        Some(KIOSK),
        None,
        Some("not json"),
    )
    .await;

    let id = first["id"].as_str().unwrap().to_string();
    k.call(
        "GET",
        "/api/v1/tickets/{id}",
        &format!("/api/v1/tickets/{id}"),
        None,
        None,
        None,
    )
    .await;
    k.call(
        "GET",
        "/api/v1/tickets/{id}",
        "/api/v1/tickets/nosuch",
        None,
        None,
        None,
    )
    .await;
    // The QR code's 200 is an image; its 404 is JSON.
    k.call(
        "GET",
        "/api/v1/tickets/{id}/qr.svg",
        "/api/v1/tickets/nosuch/qr.svg",
        None,
        None,
        None,
    )
    .await;

    // The desk: its view, a call, recall, start, finish; the next one
    // transferred and the last a no-show.
    let desk_view_t = "/api/v1/branches/{branch}/desks/{desk}";
    k.call(
        "GET",
        desk_view_t,
        &format!("{B}/desks/1"),
        Some(DESK),
        None,
        None,
    )
    .await;
    k.call(
        "GET",
        desk_view_t,
        &format!("{B}/desks/9"),
        Some(DESK),
        None,
        None,
    )
    .await;
    let (_, called) = k
        .call(
            "POST",
            &desk_t("call-next"),
            &desk("call-next"),
            Some(DESK),
            None,
            None,
        )
        .await;
    assert!(called["called"].is_object(), "{called}");
    k.call(
        "GET",
        desk_view_t,
        &format!("{B}/desks/1"),
        Some(DESK),
        None,
        None,
    )
    .await;
    for a in ["recall", "start", "finish"] {
        k.call("POST", &desk_t(a), &desk(a), Some(DESK), None, None)
            .await;
    }
    // Nothing to finish now: 409.
    k.call(
        "POST",
        &desk_t("finish"),
        &desk("finish"),
        Some(DESK),
        None,
        None,
    )
    .await;
    k.call(
        "POST",
        &desk_t("call-next"),
        &desk("call-next"),
        Some(DESK),
        None,
        None,
    )
    .await;
    k.call(
        "POST",
        &desk_t("transfer"),
        &desk("transfer"),
        Some(DESK),
        None,
        Some(r#"{"service":"B"}"#),
    )
    .await;
    k.call(
        "POST",
        &desk_t("transfer"),
        &desk("transfer"),
        Some(DESK),
        None,
        Some(r#"{"desk":"7"}"#),
    )
    .await;
    k.call(
        "POST",
        &desk_t("call-next"),
        &desk("call-next"),
        Some(DESK),
        None,
        None,
    )
    .await;
    k.call(
        "POST",
        &desk_t("no-show"),
        &desk("no-show"),
        Some(DESK),
        None,
        None,
    )
    .await;
    k.call(
        "POST",
        &desk_t("close"),
        &desk("close"),
        Some(DESK),
        None,
        None,
    )
    .await;

    // Bookings and statistics (manager).
    let bookings_t = format!("{branch_t}/bookings");
    let (s, booking) = k
        .call(
            "POST",
            &bookings_t,
            &format!("{B}/bookings"),
            Some(MANAGER),
            None,
            Some(r#"{"service":"A","slot":"2030-01-02T10:30:00+01:00"}"#),
        )
        .await;
    assert_eq!(s, 201, "{booking}");
    k.call(
        "POST",
        &bookings_t,
        &format!("{B}/bookings"),
        Some(MANAGER),
        None,
        Some(r#"{"service":"A","slot":"soon"}"#),
    )
    .await;
    let code = booking["code"].as_str().unwrap();
    let cancel_t = format!("{branch_t}/bookings/{{code}}");
    k.call(
        "DELETE",
        &cancel_t,
        &format!("{B}/bookings/{code}"),
        Some(MANAGER),
        None,
        None,
    )
    .await;
    k.call(
        "DELETE",
        &cancel_t,
        &format!("{B}/bookings/NOSUCH"),
        Some(MANAGER),
        None,
        None,
    )
    .await;
    let stats_t = format!("{branch_t}/stats");
    let (_, stats) = k
        .call(
            "GET",
            &stats_t,
            &format!("{B}/stats"),
            Some(MANAGER),
            None,
            None,
        )
        .await;
    assert_eq!(stats["services"][0]["issued"], 2, "{stats}");
    k.call(
        "GET",
        &stats_t,
        &format!("{B}/stats?day=yesterday"),
        Some(MANAGER),
        None,
        None,
    )
    .await;
    k.call(
        "GET",
        &stats_t,
        &format!("{B}/stats"),
        Some(KIOSK),
        None,
        None,
    )
    .await;

    // Every JSON operation of the document was met at least once.
    for (path, item) in k.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let json_answer = op["responses"]
                .as_object()
                .unwrap()
                .values()
                .any(|r| r["content"]["application/json"].is_object());
            let stream_or_doc = path.ends_with("/events") || path.ends_with("openapi.json");
            if json_answer && !stream_or_doc {
                let m = method.to_ascii_uppercase();
                assert!(
                    k.checked
                        .iter()
                        .any(|c| c.starts_with(&format!("{m} {path} "))),
                    "{m} {path} was not checked against its schema"
                );
            }
        }
    }
    println!(
        "{} answers checked:\n{}",
        k.checked.len(),
        k.checked.join("\n")
    );
}

/// The checks bite: an answer with a field the document does not name,
/// or without one it requires, fails its schema.
#[test]
fn a_body_that_differs_from_its_schema_fails() {
    let doc =
        strict(serde_json::from_str(&ticketing::api::document()).expect("the document is JSON"));
    let mut root = json!({"$ref": "#/components/schemas/Cancelled"});
    root["components"] = doc["components"].clone();
    let v = jsonschema::validator_for(&root).unwrap();
    assert!(v.is_valid(&json!({"code": "K7M2QX9P", "status": "cancelled"})));
    assert!(!v.is_valid(&json!({"code": "K7M2QX9P"})));
    assert!(!v.is_valid(&json!({"code": "K7M2QX9P", "status": "cancelled", "extra": 1})));
}
