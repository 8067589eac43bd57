//! Simulated visitors of a stateful portal application (`demo-node`'s
//! `GET /app`, sessions in each node's memory): each visitor keeps its own
//! cookies as a browser does, so the gateway's session affinity and the
//! application's sessions are exercised exactly as in production.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request of a visitor and what the application said about it.
#[derive(Debug, Clone)]
pub struct Visit {
    /// 0: no answer.
    pub status: u16,
    /// The node that answered (`X-Twinport-Node`).
    pub node: String,
    /// `known`: the session was on that node; `created`: it was not, and
    /// the application made a new one (the visitor logged in again).
    pub session: String,
    pub at: Instant,
}

impl Visit {
    pub fn ok(&self) -> bool {
        self.status == 200
    }
}

#[derive(Debug, Clone)]
pub struct Visitor {
    pub id: String,
    cookies: BTreeMap<String, String>,
    pub visits: Vec<Visit>,
}

impl Visitor {
    pub fn new(id: impl Into<String>) -> Self {
        Visitor {
            id: id.into(),
            cookies: BTreeMap::new(),
            visits: Vec::new(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Sets a cookie as if the visitor's browser held it (forged ones too).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_string(), value.to_string());
    }

    /// The node of the visitor's first answer.
    pub fn first_node(&self) -> Option<&str> {
        self.visits.first().map(|v| v.node.as_str())
    }

    /// Visits after the first that had to create a session.
    pub fn sessions_lost(&self) -> usize {
        self.visits
            .iter()
            .skip(1)
            .filter(|v| v.session == "created")
            .count()
    }

    /// One `GET {base}/app?visitor=ID` with the visitor's cookies; keeps the
    /// cookies the answer sets (and drops those it deletes).
    pub async fn visit(&mut self, client: &reqwest::Client, base: &str) -> Visit {
        let at = Instant::now();
        let mut req = client.get(format!("{base}/app?visitor={}", self.id));
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", jar.join("; "));
        }
        let visit = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                for sc in resp.headers().get_all("set-cookie") {
                    self.keep(sc.to_str().unwrap_or_default());
                }
                let node = resp
                    .headers()
                    .get("x-twinport-node")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                Visit {
                    status,
                    node,
                    session: body["session"].as_str().unwrap_or_default().to_string(),
                    at,
                }
            }
            Err(_) => Visit {
                status: 0,
                node: String::new(),
                session: String::new(),
                at,
            },
        };
        self.visits.push(visit.clone());
        visit
    }

    fn keep(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
            return;
        };
        let deleted = value.is_empty() || parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
        if deleted {
            self.cookies.remove(name);
        } else {
            self.cookies.insert(name.to_string(), value.to_string());
        }
    }
}

/// Runs `rounds` visits for every visitor (each visitor's in order, up to
/// `concurrency` visitors at once, `pause` between a visitor's visits) and
/// gives the visitors back in their order. Bounded: every request has a
/// 10 s timeout.
pub async fn visit_all(
    base: impl Into<String>,
    visitors: Vec<Visitor>,
    rounds: usize,
    concurrency: usize,
    pause: Duration,
) -> Vec<Visitor> {
    let base: String = base.into();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for mut v in visitors {
        let (client, permits, base) = (client.clone(), permits.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            for i in 0..rounds {
                if i > 0 && !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                v.visit(&client, &base).await;
            }
            v
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("visitor task"));
    }
    out
}

/// Visitors `prefix-0` .. `prefix-(n-1)`.
pub fn crowd(prefix: &str, n: usize) -> Vec<Visitor> {
    (0..n)
        .map(|i| Visitor::new(format!("{prefix}-{i}")))
        .collect()
}
