//! The agent's two HTTP surfaces (axum):
//!
//! - the **readiness** listener, which the gateway polls: `GET /ready`
//!   (the protocol of docs/operator-contract.md, answered from memory), `GET /live`,
//!   `GET /metrics`;
//! - the **control** API, loopback by default, every call with the bearer
//!   token and written to the audit log: `GET /v1/status`,
//!   `POST /v1/drain` · `/v1/undrain` · `/v1/maintenance`,
//!   `POST /v1/state {"state": "draining"}`, `POST /v1/upgrade
//!   {"release": PATH, "version": V}` (202, then `GET /v1/upgrade`).
//!
//! Errors are JSON `{"error": code, "message": text}`: 400 malformed body,
//! 401 no or wrong token, 404 unknown route, 409 refused by the state,
//! 422 a request that cannot be carried out (unknown state, missing
//! release path).

use crate::agent::Agent;
use crate::state::Event;
use crate::upgrade::{self, Refusal};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

type St = Arc<Agent>;

/// Largest control request body.
const MAX_BODY: usize = 16 * 1024;

pub fn readiness_router(agent: St) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/live", get(|| async { Json(json!({"alive": true})) }))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(agent)
}

pub fn control_router(agent: St) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/drain", post(|st: State<St>| command(st, Event::Drain)))
        .route(
            "/v1/undrain",
            post(|st: State<St>| command(st, Event::Undrain)),
        )
        .route(
            "/v1/maintenance",
            post(|st: State<St>| command(st, Event::Maintenance)),
        )
        .route("/v1/state", post(set_state))
        .route("/v1/upgrade", post(start_upgrade).get(upgrade_record))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            agent.clone(),
            authorize,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(agent)
}

fn error(status: StatusCode, code: &str, message: impl AsRef<str>) -> Response {
    twinport_ops::http::error(status, code, message.as_ref())
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn ready(State(a): State<St>) -> Response {
    let r = a.ready();
    let mut resp = (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        r.body.to_string(),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn metrics(State(a): State<St>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        a.metrics.render(),
    )
        .into_response()
}

async fn authorize(
    State(a): State<St>,
    ConnectInfo(caller): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let tokens = a.tokens.load();
    let allowed = twinport_ops::http::Tokens {
        operator: Some(&tokens.control),
        read_only: tokens.read.as_deref(),
    };
    twinport_ops::http::authorize_and_audit(allowed, &a.audit, caller, req, next).await
}

async fn status(State(a): State<St>) -> Response {
    Json(a.status()).into_response()
}

async fn command(State(a): State<St>, event: Event) -> Response {
    if a.upgrade_lock.try_lock().is_err() {
        return error(
            StatusCode::CONFLICT,
            "upgrade_in_progress",
            format!("cannot {} while an upgrade is running", event.as_str()),
        );
    }
    match a.apply(event, &format!("{} by the operator", event.as_str())) {
        Ok(t) => Json(json!({
            "node": a.config.node,
            "state": a.state().as_str(),
            "changed": t.is_some(),
        }))
        .into_response(),
        Err(r) => error(StatusCode::CONFLICT, "transition_refused", r.to_string()),
    }
}

/// A JSON body, or the JSON 400 that says what is wrong with it.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not the expected JSON: {e}"),
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateRequest {
    state: String,
}

async fn set_state(st: State<St>, bytes: Bytes) -> Response {
    let req: StateRequest = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let event = match req.state.as_str() {
        "draining" => Event::Drain,
        "ready" => Event::Undrain,
        "maintenance" => Event::Maintenance,
        other => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_state",
                format!("`{other}` is not a state an operator can ask for: use ready, draining or maintenance"),
            )
        }
    };
    command(st, event).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpgradeRequest {
    release: PathBuf,
    version: String,
}

async fn start_upgrade(State(a): State<St>, bytes: Bytes) -> Response {
    let req: UpgradeRequest = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Ok(guard) = a.upgrade_lock.clone().try_lock_owned() else {
        return error(
            StatusCode::CONFLICT,
            "upgrade_in_progress",
            Refusal::Busy.to_string(),
        );
    };
    if let Err(r) = upgrade::check(&a, &req.release, &req.version) {
        let status = match r {
            Refusal::Release(crate::release::ReleaseError::Current(_))
            | Refusal::Busy
            | Refusal::State(_) => StatusCode::CONFLICT,
            Refusal::Release(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        return error(status, "upgrade_refused", r.to_string());
    }
    upgrade::begin(&a, &req.release, &req.version);
    let record = a.upgrade();
    tokio::spawn(upgrade::run(a.clone(), req.release, req.version, guard));
    (StatusCode::ACCEPTED, Json(record)).into_response()
}

async fn upgrade_record(State(a): State<St>) -> Response {
    match a.upgrade() {
        Some(u) => Json(u).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no_upgrade",
            "no upgrade has run since the agent started",
        ),
    }
}
