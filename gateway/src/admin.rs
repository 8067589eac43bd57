//! The admin API (docs/operator-contract.md): status, drain, undrain, maintenance,
//! switchover and config reload, on its own listener.
//!
//! Every call needs `Authorization: Bearer <token>` (the token file named
//! in the configuration, re-read on reload), compared in constant time;
//! without it the answer is 401 and nothing changes. Every call, refused
//! or not, is written to the audit log before it answers. Answers are JSON.
//!
//! The listener is bound with `SO_REUSEPORT` so that during a binary
//! upgrade the new gateway can open it while the old one still runs.

use crate::config::ConfigError;
use crate::controller::{ControlError, Shared};
use crate::failover::{AdminState, SwitchoverError};
use crate::reload::{ReloadError, Reloader};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use twinport_ops::audit::AuditLog;

#[derive(Clone)]
pub struct AdminApp {
    pub shared: Arc<Shared>,
    pub reloader: Arc<Reloader>,
    pub audit: Arc<AuditLog>,
}

type St = AdminApp;

/// Binds the admin listener (SO_REUSEPORT) on `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

pub fn router(state: St) -> Router {
    Router::new()
        .route("/", get(page_html))
        .route("/status.js", get(page_js))
        .route("/status.css", get(page_css))
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .route("/v1/nodes/{node}/weight", post(node_weight))
        .route("/v1/nodes/{node}/{action}", post(node_action))
        .route("/v1/switchover", post(switchover))
        .route("/v1/config/reload", post(reload))
        .route("/v1/pair/state", post(pair_state))
        .route("/v1/pair/vrrp", post(pair_vrrp))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// Serves the admin API until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: St,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        return axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
    };
    // HTTPS (and mutual TLS): each connection's handshake, then HTTP/1.1
    // or HTTP/2 on it, with the caller's address for the audit log.
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(state);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "admin TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let app = app.clone();
                    async move {
                        use tower::ServiceExt;
                        app.oneshot(req.map(axum::body::Body::new)).await
                    }
                },
            );
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

const PAIR_STATE: &str = "/v1/pair/state";

/// The status page's static files: no data in them, so no token needed
/// (the page asks for the token and sends it with every data call).
const PAGE_FILES: [&str; 3] = ["/", "/status.js", "/status.css"];

async fn authorize(
    State(st): State<St>,
    ConnectInfo(caller): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    // The page's files and /healthz (for a VRRP check script) are public on
    // this listener, which stays on loopback or behind mutual TLS.
    if req.method() == axum::http::Method::GET
        && (PAGE_FILES.contains(&req.uri().path()) || req.uri().path() == "/healthz")
    {
        return next.run(req).await;
    }
    let snap = st.shared.snapshot.load();
    // The peer gateway's exchange: its own token, good for nothing else,
    // and not written to the audit log every second (a change it brings
    // is, by the handler).
    if req.uri().path() == PAIR_STATE {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let ok = snap
            .config
            .pair
            .as_ref()
            .is_some_and(|p| twinport_ops::token::authorized(&p.token, authorization));
        if ok {
            return next.run(req).await;
        }
        st.audit.record(
            caller,
            &format!("{} {PAIR_STATE}", req.method()),
            "unauthorized",
            401,
        );
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the peer link needs the pair's bearer token",
        );
    }
    let admin = snap.config.admin.as_ref();
    let tokens = twinport_ops::http::Tokens {
        operator: admin.map(|a| &*a.token),
        read_only: admin.and_then(|a| a.read_token.as_deref()),
    };
    twinport_ops::http::authorize_and_audit(tokens, &st.audit, caller, req, next).await
}

use twinport_ops::http::error;

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such admin call")
}

/// The published status plus live in-flight and request counts.
pub fn status_value(shared: &Shared) -> Value {
    let mut status = (**shared.status.load()).clone();
    let snap = shared.snapshot.load();
    for (n, node) in status.nodes.iter_mut().enumerate() {
        let rt = &snap.nodes[n];
        node.inflight = rt.inflight.get();
        node.requests = crate::metrics::CODE_CLASSES
            .iter()
            .zip(&rt.requests)
            .map(|(class, c)| (*class, c.get()))
            .collect();
    }
    let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
    v["vrrp"] = json!(shared.pair.vrrp().as_str());
    v["pair"] = match &snap.config.pair {
        None => Value::Null,
        Some(p) => json!({
            "name": p.name,
            "peer": shared.pair.peer(p.sync_interval),
            "operator_state": **shared.operator_state().borrow(),
        }),
    };
    v
}

async fn healthz(State(st): State<St>) -> Response {
    let (code, body) = crate::metrics::healthz(&st.shared.self_health);
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn status(State(st): State<St>) -> Response {
    Json(status_value(&st.shared)).into_response()
}

fn control_error(e: ControlError) -> Response {
    match e {
        ControlError::UnknownNode(n) => error(
            StatusCode::NOT_FOUND,
            "unknown_node",
            &format!("no node is named `{n}`"),
        ),
        ControlError::Switchover(SwitchoverError::NotActiveStandby) => error(
            StatusCode::CONFLICT,
            "not_active_standby",
            "switchover needs active-standby mode",
        ),
        ControlError::Switchover(SwitchoverError::NotEligible(why)) => error(
            StatusCode::CONFLICT,
            "target_not_healthy",
            &format!("the target cannot serve: {why}"),
        ),
        ControlError::PeerUnreachable(_) => {
            error(StatusCode::CONFLICT, "peer_unreachable", &e.to_string())
        }
        ControlError::Stopped => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the gateway is shutting down",
        ),
    }
}

#[derive(Deserialize)]
struct NodeActionQuery {
    /// `drain?soft=true`: sessions bound to the node finish there first.
    soft: Option<bool>,
}

async fn node_action(
    State(st): State<St>,
    Path((node, action)): Path<(String, String)>,
    Query(q): Query<NodeActionQuery>,
) -> Response {
    let state = match action.as_str() {
        "drain" => AdminState::Drain,
        "undrain" => AdminState::Active,
        "maintenance" => AdminState::Maintenance,
        _ => return not_found().await,
    };
    let n = match st.shared.node_index(&node) {
        Ok(n) => n,
        Err(e) => return control_error(e),
    };
    let soft = q.soft.unwrap_or(false);
    if soft && state != AdminState::Drain {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
            "only a drain can be soft",
        );
    }
    match st.shared.set_admin(n, state, soft).await {
        Ok(()) => {
            let pair = pair_sync(&st.shared).await;
            let status = status_value(&st.shared);
            let soft_drain = status["nodes"]
                .as_array()
                .and_then(|ns| ns.iter().find(|x| x["name"] == node.as_str()))
                .is_some_and(|x| !x["soft_drain"].is_null());
            Json(json!({ "node": node, "admin": state.as_str(), "soft_drain": soft_drain, "pair": pair, "status": status }))
                .into_response()
        }
        Err(e) => control_error(e),
    }
}

/// An operator's weight for a node (active-active: its share of new
/// requests), kept like a drain and shared with the peer gateway.
async fn node_weight(
    State(st): State<St>,
    Path(node): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    // `weight` must be there: 1-1000, or null for the configured weight.
    let given = body.ok().and_then(|Json(v)| v.get("weight").cloned());
    let weight = match given {
        Some(Value::Null) => None,
        Some(w) if w.as_u64().is_some_and(|w| (1..=1000).contains(&w)) => {
            w.as_u64().map(|w| w as u32)
        }
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_request",
                r#"the body must be {"weight": 1-1000} or {"weight": null} (the configured weight)"#,
            )
        }
    };
    let n = match st.shared.node_index(&node) {
        Ok(n) => n,
        Err(e) => return control_error(e),
    };
    match st.shared.set_weight(n, weight).await {
        Ok(()) => {
            let pair = pair_sync(&st.shared).await;
            Json(json!({ "node": node, "weight": weight, "pair": pair, "status": status_value(&st.shared) }))
                .into_response()
        }
        Err(e) => control_error(e),
    }
}

/// After a change: the peer gateway told at once, before the answer, so
/// that the answer says whether the pair holds it (`null` without a pair).
/// An operator whose change did not reach the peer sees why, and the
/// change is sent again on every sync until it does.
async fn pair_sync(shared: &Shared) -> Value {
    let config = shared.snapshot.load().config.clone();
    let Some(pair) = &config.pair else {
        return Value::Null;
    };
    match crate::pair::sync_now(shared, pair).await {
        Ok(peer) => json!({ "peer": peer, "synced": true }),
        Err(why) => json!({ "peer": pair.peer, "synced": false, "error": why }),
    }
}

#[derive(Deserialize)]
struct SwitchoverBody {
    to: String,
    /// With a pair whose peer cannot be reached: switch over anyway.
    #[serde(default)]
    force: bool,
}

async fn switchover(
    State(st): State<St>,
    body: Result<Json<SwitchoverBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
            r#"the body must be {"to":"<node>"}"#,
        );
    };
    let n = match st.shared.node_index(&body.to) {
        Ok(n) => n,
        Err(e) => return control_error(e),
    };
    match st.shared.switchover(n, body.force).await {
        Ok(()) => {
            let pair = pair_sync(&st.shared).await;
            Json(json!({ "primary": body.to, "pair": pair, "status": status_value(&st.shared) }))
                .into_response()
        }
        Err(e) => control_error(e),
    }
}

/// The peer gateway's side of an exchange of operator state; answers ours
/// once merged (see `crate::pair`).
async fn pair_state(
    State(st): State<St>,
    ConnectInfo(caller): ConnectInfo<SocketAddr>,
    body: Result<Json<crate::pair::Exchange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(name) = st
        .shared
        .snapshot
        .load()
        .config
        .pair
        .as_ref()
        .map(|p| p.name.clone())
    else {
        return not_found().await;
    };
    let theirs = match body {
        Ok(Json(t)) => t,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_request",
                &e.body_text(),
            )
        }
    };
    let before = st.shared.operator_state().borrow().clone();
    let from = theirs.from.clone();
    match st.shared.peer_state(theirs).await {
        Ok(merged) => {
            if *merged != *before {
                st.audit.record(
                    caller,
                    &format!("POST {PAIR_STATE}: operator state from the peer gateway {from}"),
                    "ok",
                    200,
                );
            }
            let mut ours = st.shared.exchange_of(&name);
            ours.state = (*merged).clone();
            Json(ours).into_response()
        }
        Err(e) => control_error(e),
    }
}

#[derive(Deserialize)]
struct VrrpBody {
    state: String,
}

/// keepalived's notify hook: `{"state":"MASTER"}` (or BACKUP, FAULT, STOP).
async fn pair_vrrp(
    State(st): State<St>,
    body: Result<Json<VrrpBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(state) = body
        .ok()
        .and_then(|Json(b)| crate::pair::Vrrp::parse(&b.state))
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
            r#"the body must be {"state":"MASTER|BACKUP|FAULT|STOP"}"#,
        );
    };
    match st.shared.vrrp(state) {
        Ok(()) => Json(json!({ "vrrp": state.as_str() })).into_response(),
        Err(e) => control_error(e),
    }
}

async fn reload(State(st): State<St>) -> Response {
    match st.reloader.reload("admin API").await {
        Ok(report) => Json(json!(report)).into_response(),
        Err(ReloadError::Control(e)) => control_error(e),
        Err(ReloadError::Config(e)) => {
            let body = match &e {
                ConfigError::Invalid { file, errors } => json!({
                    "error": "invalid_config",
                    "file": file,
                    "errors": errors.iter().map(|f| json!({ "field": f.field, "line": f.line, "message": f.message })).collect::<Vec<_>>(),
                    "message": e.to_string(),
                }),
                other => json!({ "error": "invalid_config", "message": other.to_string() }),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
    }
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn page_html() -> Response {
    page(
        "text/html; charset=utf-8",
        include_str!("admin_page/status.html"),
    )
}

async fn page_js() -> Response {
    page(
        "text/javascript; charset=utf-8",
        include_str!("admin_page/status.js"),
    )
}

async fn page_css() -> Response {
    page(
        "text/css; charset=utf-8",
        include_str!("admin_page/status.css"),
    )
}
