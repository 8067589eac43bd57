//! A bounded mixed load through the gateway, every request recorded.
//!
//! Three kinds of clients, as in a branch office: visitors' phones and
//! the boards browsing (GETs), kiosks issuing tickets (POST with an
//! `Idempotency-Key` per touch, sent again with the same key until a
//! ticket is acknowledged, as the kiosk page does), and a desk calling
//! and finishing visitors (POSTs, one key per press). Each worker stops
//! at the deadline or after `max_per_worker` requests, whichever comes
//! first; a kiosk finishes the touch it is on (bounded by `settle`).

use crate::appliance::{BRANCH, DESK_TOKEN, KIOSK_TOKEN};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Browse,
    Issue,
    Desk,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Browse => "browse",
            Kind::Issue => "issue",
            Kind::Desk => "desk",
        }
    }
}

/// One request and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub kind: Kind,
    /// When it was sent, since the run's start.
    pub start: Duration,
    pub latency: Duration,
    pub status: u16,
    pub ok: bool,
    /// Why it failed: `status 503 unavailable`, `reset`, `timeout`...
    pub failure: Option<String>,
    /// A kiosk's second or later attempt for the same touch.
    pub resend: bool,
}

impl Record {
    pub fn end(&self) -> Duration {
        self.start + self.latency
    }
}

/// A ticket the kiosk printed: the appliance acknowledged it.
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    pub key: String,
    pub id: String,
    pub display: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub browsers: usize,
    pub kiosks: usize,
    pub desks: usize,
    pub duration: Duration,
    pub max_per_worker: usize,
    /// How long a kiosk keeps sending one touch again.
    pub settle: Duration,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub records: Vec<Record>,
    pub acks: Vec<Ack>,
    /// Touches whose key was answered with two different tickets.
    pub conflicting: Vec<String>,
    /// Touches a kiosk gave up on (no ticket acknowledged within `settle`).
    pub abandoned: Vec<String>,
}

/// When a worker stops: the scenario said so, the deadline passed, or it
/// sent its most requests.
#[derive(Clone)]
struct Limits {
    stop: Arc<AtomicBool>,
    deadline: Instant,
    max: usize,
}

impl Limits {
    fn go(&self, sent: usize) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline && sent < self.max
    }
}

/// Runs the plan against `base` (the gateway) until the deadline or `stop`.
pub async fn run(base: String, plan: Plan, t0: Instant, stop: Arc<AtomicBool>) -> Outcome {
    let limits = Limits {
        stop,
        deadline: t0 + plan.duration,
        max: plan.max_per_worker,
    };
    let mut tasks = Vec::new();
    for w in 0..plan.browsers {
        tasks.push(tokio::spawn(browser(base.clone(), w, t0, limits.clone())));
    }
    for w in 0..plan.kiosks {
        let settle = plan.settle;
        tasks.push(tokio::spawn(kiosk(
            base.clone(),
            w,
            t0,
            limits.clone(),
            settle,
        )));
    }
    for w in 0..plan.desks {
        tasks.push(tokio::spawn(desk(base.clone(), w, t0, limits.clone())));
    }
    let mut all = Outcome::default();
    for t in tasks {
        if let Ok(o) = t.await {
            all.records.extend(o.records);
            all.acks.extend(o.acks);
            all.conflicting.extend(o.conflicting);
            all.abandoned.extend(o.abandoned);
        }
    }
    all.records.sort_by_key(|r| r.start);
    all
}

/// Reads the board and the branch, alternately.
async fn browser(base: String, w: usize, t0: Instant, limits: Limits) -> Outcome {
    let c = client();
    let mut out = Outcome::default();
    let mut i = 0;
    while limits.go(i) {
        let path = if (i + w) % 2 == 0 {
            format!("/api/v1/branches/{BRANCH}/board")
        } else {
            format!("/api/v1/branches/{BRANCH}")
        };
        let (r, _) = send(Kind::Browse, c.get(format!("{base}{path}")), t0, false).await;
        out.records.push(r);
        i += 1;
    }
    out
}

/// Touches for tickets, each sent again with its key until printed.
async fn kiosk(base: String, w: usize, t0: Instant, limits: Limits, settle: Duration) -> Outcome {
    let c = client();
    let mut out = Outcome::default();
    let services = ["A", "B", "C"];
    let mut i = 0;
    while limits.go(out.records.len()) {
        let key = format!("kiosk{w}-touch{i}");
        let body = format!(r#"{{"service":"{}"}}"#, services[i % 3]);
        let touched = Instant::now();
        let mut resend = false;
        let mut got: Option<(String, String)> = None;
        loop {
            let req = c
                .post(format!("{base}/api/v1/branches/{BRANCH}/tickets"))
                .bearer_auth(KIOSK_TOKEN)
                .header("idempotency-key", &key)
                .header("content-type", "application/json")
                .body(body.clone());
            let (r, json) = send(Kind::Issue, req, t0, resend).await;
            let ok = r.ok;
            out.records.push(r);
            if ok {
                let id = json["id"].as_str().unwrap_or_default().to_string();
                let display = json["display"].as_str().unwrap_or_default().to_string();
                if let Some((first, _)) = &got {
                    if *first != id {
                        out.conflicting.push(key.clone());
                    }
                }
                got = Some((id, display));
                break;
            }
            if touched.elapsed() > settle {
                break;
            }
            resend = true;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match got {
            Some((id, display)) => out.acks.push(Ack { key, id, display }),
            None => out.abandoned.push(key),
        }
        i += 1;
    }
    out
}

/// Calls and finishes visitors at desk 1, 2 or 3.
async fn desk(base: String, w: usize, t0: Instant, limits: Limits) -> Outcome {
    let c = client();
    let mut out = Outcome::default();
    let desk = ["1", "2", "3"][w % 3];
    let mut press = 0;
    let mut action = "call-next";
    while limits.go(out.records.len()) {
        let req = c
            .post(format!(
                "{base}/api/v1/branches/{BRANCH}/desks/{desk}/{action}"
            ))
            .bearer_auth(DESK_TOKEN)
            .header("idempotency-key", format!("desk{w}-press{press}"));
        let (r, json) = send(Kind::Desk, req, t0, false).await;
        let ok = r.ok;
        // A press without a definitive answer (a 5xx, a broken
        // connection) may have acted: it is sent again with the same
        // key (what the key is for), and the store answers as it
        // did. A new key would finish a ticket twice over: a 409.
        let definitive = ok || (400..500).contains(&r.status);
        out.records.push(r);
        if definitive {
            press += 1;
        }
        // call-next → finish → call-next ...; nobody waiting: pause.
        action = match (action, ok) {
            ("call-next", true) if !json["called"].is_null() => "finish",
            ("call-next", _) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                "call-next"
            }
            ("finish", true) => "call-next",
            _ => action,
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .pool_max_idle_per_host(1)
        .build()
        .expect("an HTTP client")
}

/// Sends one request; its record and JSON body.
async fn send(
    kind: Kind,
    req: reqwest::RequestBuilder,
    t0: Instant,
    resend: bool,
) -> (Record, serde_json::Value) {
    let at = Instant::now();
    let start = at - t0;
    let result = match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(body) => Ok((status, body)),
                Err(e) => Err((status, classify(&e))),
            }
        }
        Err(e) => Err((0, classify(&e))),
    };
    let latency = at.elapsed();
    match result {
        Ok((status, body)) => {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let ok = (200..300).contains(&status);
            let failure = (!ok).then(|| {
                let code = json["error"].as_str().unwrap_or("");
                format!("status {status} {code}").trim().to_string()
            });
            (
                Record {
                    kind,
                    start,
                    latency,
                    status,
                    ok,
                    failure,
                    resend,
                },
                json,
            )
        }
        Err((status, why)) => (
            Record {
                kind,
                start,
                latency,
                status,
                ok: false,
                failure: Some(why),
                resend,
            },
            serde_json::Value::Null,
        ),
    }
}

/// A short name for a transport error.
fn classify(e: &reqwest::Error) -> String {
    let text = format!("{e:?}");
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if text.contains("ConnectionReset") || text.contains("reset by peer") {
        "reset".into()
    } else if text.contains("IncompleteMessage") {
        "incomplete message".into()
    } else if text.contains("not ready") || text.contains("closed") {
        "connection closed".into()
    } else {
        "transport".into()
    }
}
