//! `demo-node`: a stand-in twin node for the local demo and the tests.
//!
//! It plays both the portal application (on `--listen`) and its node-agent
//! (`/ready` and `/live` on `--agent-listen`), in one process, so that
//! killing or stopping it fails the whole node as a real crash would.
//!
//! Application routes: `GET /` (a page), `GET /whoami` (the node name),
//! `GET /slow?ms=N`, `GET /status/{code}`, `POST /record?id=X&ms=N` (appends
//! `X` to the journal file before answering after `ms`), `GET /headers` (the
//! request's headers as JSON, each name with its values), `GET /app?visitor=V`
//! (a stateful application: sessions in this process's memory under a
//! `JSESSIONID` cookie; answers whether the request's session was `known`
//! here or had to be `created`, with a new cookie). Every answer
//! carries `X-Twinport-Node` and `X-Twinport-Version`.
//! Agent routes: `GET /ready`, `GET /live`, `POST /_demo/state/{state}`.
#![forbid(unsafe_code)]

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "demo-node",
    about = "Twinport demo twin node (application + readiness agent)"
)]
struct Args {
    #[arg(long)]
    name: String,
    /// Application address.
    #[arg(long)]
    listen: SocketAddr,
    /// Readiness-agent address (defaults to the application address).
    #[arg(long)]
    agent_listen: Option<SocketAddr>,
    #[arg(long, default_value = "1.0.0")]
    version: String,
    /// Weight reported by /ready, in percent.
    #[arg(long, default_value_t = 100)]
    weight: u32,
    /// File that `POST /record` appends ids to.
    #[arg(long)]
    journal: Option<PathBuf>,
}

struct Node {
    name: String,
    version: String,
    weight: u32,
    state: Mutex<String>,
    journal: Option<Mutex<std::fs::File>>,
    /// Session id → (visitor, requests seen).
    sessions: Mutex<std::collections::HashMap<String, (String, u64)>>,
    next_session: std::sync::atomic::AtomicU64,
}

/// Sessions kept at most; beyond, the demo forgets them all.
const MAX_SESSIONS: usize = 100_000;

#[derive(Deserialize)]
struct AppQuery {
    visitor: Option<String>,
}

/// The session cookie's value in the request, if any.
fn session_id(h: &axum::http::HeaderMap) -> Option<String> {
    h.get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "JSESSIONID")
        .map(|(_, v)| v.to_string())
}

/// A page of a stateful application: the session is looked up in this
/// node's memory; one that is not here is created (a visitor whose node
/// failed logs in again on the twin).
async fn app(
    State(n): State<Shared>,
    Query(q): Query<AppQuery>,
    h: axum::http::HeaderMap,
) -> Response {
    let visitor = q.visitor.unwrap_or_default();
    let mut sessions = n.sessions.lock().expect("sessions lock");
    if let Some(id) = session_id(&h) {
        if let Some((v, count)) = sessions.get_mut(&id) {
            *count += 1;
            return Json(
                json!({ "node": n.name, "session": "known", "visitor": v, "requests": count }),
            )
            .into_response();
        }
    }
    if sessions.len() >= MAX_SESSIONS {
        sessions.clear();
    }
    let seq = n
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let id = format!("{}.{seq}.{nanos:x}", n.name);
    sessions.insert(id.clone(), (visitor.clone(), 1));
    let mut r =
        Json(json!({ "node": n.name, "session": "created", "visitor": visitor, "requests": 1 }))
            .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={id}; Path=/; HttpOnly")) {
        r.headers_mut().insert(axum::http::header::SET_COOKIE, v);
    }
    r
}

type Shared = Arc<Node>;

#[derive(Deserialize)]
struct SlowQuery {
    ms: Option<u64>,
}

#[derive(Deserialize)]
struct RecordQuery {
    id: String,
    ms: Option<u64>,
}

async fn index(State(n): State<Shared>) -> Html<String> {
    Html(format!(
        "<!doctype html><title>Twinport demo</title><h1>Served by twin node {}</h1><p>version {}</p>",
        n.name, n.version
    ))
}

async fn whoami(State(n): State<Shared>) -> String {
    n.name.clone()
}

/// The request's headers as the node received them.
async fn headers(h: axum::http::HeaderMap) -> Json<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for name in h.keys() {
        let values: Vec<String> = h
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(name.as_str().to_string(), values.into());
    }
    Json(out.into())
}

async fn slow(State(n): State<Shared>, Query(q): Query<SlowQuery>) -> String {
    tokio::time::sleep(Duration::from_millis(q.ms.unwrap_or(1000))).await;
    n.name.clone()
}

async fn status(Path(code): Path<u16>) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

async fn record(State(n): State<Shared>, Query(q): Query<RecordQuery>) -> Response {
    if let Some(j) = &n.journal {
        let mut f = j.lock().expect("journal lock");
        if writeln!(f, "{}", q.id).and_then(|_| f.sync_data()).is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    tokio::time::sleep(Duration::from_millis(q.ms.unwrap_or(0))).await;
    Json(json!({ "node": n.name, "id": q.id })).into_response()
}

/// The largest body `/upload` takes (bench/run's HTTP/2 uploads).
const MAX_BENCH_BODY: usize = 16 << 20;

/// Reads the whole request body (at most 16 MiB) and answers its length.
async fn upload(body: axum::body::Body) -> Response {
    match axum::body::to_bytes(body, MAX_BENCH_BODY).await {
        Ok(b) => format!("{}\n", b.len()).into_response(),
        Err(_) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    }
}

async fn ready(State(n): State<Shared>) -> Response {
    let state = n.state.lock().expect("state lock").clone();
    if state == "ready" {
        Json(json!({ "node": n.name, "state": "ready", "weight": n.weight, "version": n.version }))
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "node": n.name, "state": state, "reason": "set by the demo control" })),
        )
            .into_response()
    }
}

async fn set_state(State(n): State<Shared>, Path(state): Path<String>) -> Response {
    const STATES: [&str; 6] = [
        "ready",
        "draining",
        "maintenance",
        "upgrading",
        "unhealthy",
        "starting",
    ];
    if !STATES.contains(&state.as_str()) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("unknown state {state}\n"),
        )
            .into_response();
    }
    *n.state.lock().expect("state lock") = state.clone();
    Json(json!({ "node": n.name, "state": state })).into_response()
}

fn agent_routes() -> Router<Shared> {
    Router::new()
        .route("/ready", get(ready))
        .route("/live", get(|| async { "alive\n" }))
        .route("/_demo/state/{state}", post(set_state))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let journal = match &args.journal {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
        None => None,
    };
    let node: Shared = Arc::new(Node {
        name: args.name.clone(),
        version: args.version.clone(),
        weight: args.weight,
        state: Mutex::new("ready".into()),
        journal,
        sessions: Mutex::new(Default::default()),
        next_session: Default::default(),
    });
    let header = HeaderValue::from_str(&args.name)?;
    let version = HeaderValue::from_str(&args.version)?;
    let mut app = Router::new()
        .route("/", get(index))
        .route("/whoami", get(whoami))
        .route("/slow", get(slow))
        .route("/headers", get(headers))
        .route("/app", get(app))
        .route("/status/{code}", get(status))
        .route("/record", post(record))
        .route("/upload", post(upload))
        .layer(axum::middleware::map_response(move |mut r: Response| {
            let (header, version) = (header.clone(), version.clone());
            async move {
                r.headers_mut().insert("x-twinport-node", header);
                r.headers_mut().insert("x-twinport-version", version);
                r
            }
        }));
    let app_listener = tokio::net::TcpListener::bind(args.listen).await?;
    match args.agent_listen {
        Some(agent_addr) => {
            let agent_listener = tokio::net::TcpListener::bind(agent_addr).await?;
            let agent = agent_routes().with_state(node.clone());
            tokio::spawn(async move { axum::serve(agent_listener, agent).await });
        }
        None => app = app.merge(agent_routes()),
    }
    tracing::info!(node = %args.name, app = %args.listen, agent = ?args.agent_listen, "demo node serving");
    axum::serve(app_listener, app.with_state(node)).await?;
    Ok(())
}
