//! The HTTP JSON API (axum), its server-sent event streams, and the
//! service's own `/ready` and `/live`. `/metrics` is served on its own
//! listener ([`metrics_router`], `metrics_listen`), never here: the
//! gateway forwards every path of this router to the public.
//!
//! Who may call what, per branch (tokens from the branch's config):
//!
//! | caller | calls |
//! | --- | --- |
//! | anyone | branch info, board, ticket tracking, their event streams, QR codes, OpenAPI |
//! | kiosk | `POST /api/v1/branches/{b}/tickets` |
//! | desk | `/api/v1/branches/{b}/desks/{d}/...` |
//! | manager | bookings, statistics |
//!
//! Errors are JSON `{"error": code, "message": text}` with a 4xx status
//! and change nothing: 400 malformed, 401/403 token, 404 unknown branch,
//! desk, ticket or booking, 409 refused by the state, 413 too large, 422
//! not possible as asked (`idempotency_key_reused`: the key was used with
//! another request).
//!
//! Every change accepts an `Idempotency-Key`: a repeat acts once and
//! answers as the first did (the ticket or desk as it is now), with
//! `Idempotent-Replayed: true`. Keys are namespaced by branch and caller
//! (`kiosk:`, `desk:{id}:`), so a kiosk's key never meets a desk's.

use crate::app::App;
use crate::config::Branch;
use crate::store::{DeskAction, IssueRequest, StoreError, TransferTo};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

type St = Arc<App>;

/// Largest request body.
const MAX_BODY: usize = 8 * 1024;

pub fn router(app: St) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/live", get(|| async { Json(json!({"alive": true})) }))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/branches/{branch}", get(branch_info))
        .route("/api/v1/branches/{branch}/board", get(board))
        .route("/api/v1/branches/{branch}/board/events", get(board_events))
        .route("/api/v1/branches/{branch}/tickets", post(issue))
        .route("/api/v1/tickets/{id}", get(track))
        .route("/api/v1/tickets/{id}/events", get(track_events))
        .route("/api/v1/tickets/{id}/qr.svg", get(qr))
        .route("/api/v1/branches/{branch}/desks/{desk}", get(desk_view))
        .route(
            "/api/v1/branches/{branch}/desks/{desk}/events",
            get(desk_events),
        )
        .route(
            "/api/v1/branches/{branch}/desks/{desk}/{action}",
            post(desk_action),
        )
        .route("/api/v1/branches/{branch}/bookings", post(create_booking))
        .route(
            "/api/v1/branches/{branch}/bookings/{code}",
            delete(cancel_booking),
        )
        .route("/api/v1/branches/{branch}/stats", get(stats))
        .merge(crate::pages::router())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(app)
}

/// Every error the API answers is JSON, also those axum writes itself
/// (a path that is not UTF-8, a method a route does not take, a body over
/// the limit): their text becomes the message.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    };
    let message = String::from_utf8_lossy(&text).trim().to_string();
    let mut r = error(
        status,
        code,
        if message.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            message
        },
    );
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    r
}

/// An API error: status, code, message.
pub struct ApiError(StatusCode, &'static str, String);

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    ApiError(status, code, message.into()).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        twinport_ops::http::error(self.0, self.1, &self.2)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, "not_found", m),
            StoreError::Conflict(m) => ApiError(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
            StoreError::KeyReused(m) => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                m,
            ),
            full if full.is_storage_full() => {
                tracing::error!(error = %full, "the queue store's disk is full");
                ApiError(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
                    "the queue store's disk is full: nothing was changed (no ticket issued); \
                     try again once space is freed"
                        .into(),
                )
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the queue store is not available; try again".into(),
                )
            }
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// Which token a call needs.
#[derive(Clone, Copy)]
enum Role {
    Kiosk,
    Desk,
    Manager,
}

/// The branch, if the caller holds its token for `role`. A token of
/// another role or branch is a 403; none or an unknown one a 401.
fn authorize<'a>(
    app: &'a App,
    branch: &str,
    role: Role,
    headers: &HeaderMap,
) -> Result<&'a Branch, ApiError> {
    let b = app.branch(branch)?;
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let tokens = app.tokens.load();
    let t = &tokens[&b.id];
    let want = match role {
        Role::Kiosk => &t.kiosk,
        Role::Desk => &t.desk,
        Role::Manager => &t.manager,
    };
    if twinport_ops::token::authorized(want, auth) {
        return Ok(b);
    }
    let known = tokens.values().any(|t| {
        [&t.kiosk, &t.desk, &t.manager]
            .into_iter()
            .any(|t| twinport_ops::token::authorized(t, auth))
    });
    Err(if known {
        ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token may not do that in branch `{branch}`"),
        )
    } else {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is needed".into(),
        )
    })
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

async fn ready(State(app): State<St>) -> Response {
    match app.store.ping().await {
        Ok(()) => Json(json!({"node": app.config.node, "state": "ready", "weight": 100, "version": env!("CARGO_PKG_VERSION")})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"node": app.config.node, "state": "unhealthy", "reason": format!("{e}")})),
        )
            .into_response(),
    }
}

/// The metrics listener's router: `/metrics` only.
pub fn metrics_router(app: St) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "only /metrics here") })
        .with_state(app)
}

async fn metrics(State(app): State<St>) -> Response {
    if let Err(e) = app.refresh_gauges().await {
        tracing::warn!(error = %e, "cannot read the queue gauges from the store");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
        .into_response()
}

async fn branch_info(State(app): State<St>, Path(branch): Path<String>) -> ApiResult {
    let b = app.branch(&branch)?;
    Ok(Json(app.branch_view(b).await?).into_response())
}

async fn board(State(app): State<St>, Path(branch): Path<String>) -> ApiResult {
    let b = app.branch(&branch)?;
    Ok(Json(app.board_view(b).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    service: Option<String>,
    priority_group: Option<String>,
    booking_code: Option<String>,
}

/// The `Idempotency-Key` (or a fresh one: the request is then not
/// replayable), checked: 1-128 visible ASCII characters.
/// The request's `Idempotency-Key`, or a fresh one (the request then
/// happens once anyway, but a repeat cannot be recognised).
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    Ok(optional_idempotency_key(headers)?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()))
}

fn optional_idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let k = v.to_str().unwrap_or("");
            if (1..=128).contains(&k.len()) && k.bytes().all(|c| c.is_ascii_graphic()) {
                Ok(Some(k.to_string()))
            } else {
                Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Idempotency-Key must be 1-128 visible ASCII characters".into(),
                ))
            }
        }
    }
}

async fn issue(
    State(app): State<St>,
    Path(branch): Path<String>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b = authorize(&app, &branch, Role::Kiosk, &headers)?;
    let real_ip = headers.get("x-real-ip").and_then(|v| v.to_str().ok());
    if !app.kiosk_allowed(&b.id, app.client(peer.ip(), real_ip)) {
        let mut r = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "more than {} ticket requests per second from this kiosk",
                app.config.kiosk_rate_limit
            ),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return Ok(r);
    }
    // A kiosk's key is its own: a desk's key cannot replay a ticket.
    let key = format!("kiosk:{}", idempotency_key(&headers)?);
    let req: IssueBody = body(&bytes)?;
    let request = match (req.service, req.booking_code) {
        (Some(service), None) => {
            if b.service(&service).is_none() {
                return Err(ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_service",
                    format!("branch `{branch}` has no service `{service}`"),
                ));
            }
            if let Some(g) = &req.priority_group {
                if b.priority_group(g).is_none() {
                    return Err(ApiError(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unknown_priority_group",
                        format!("branch `{branch}` has no priority group `{g}`"),
                    ));
                }
            }
            IssueRequest::Service {
                service,
                priority_group: req.priority_group,
            }
        }
        (None, Some(code)) => {
            let code = code.trim().to_ascii_uppercase();
            if code.is_empty()
                || code.len() > 16
                || !code.bytes().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_booking_code",
                    "a booking code is 1-16 letters and digits".into(),
                ));
            }
            IssueRequest::Booking { code }
        }
        _ => {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "give either `service` or `booking_code`".into(),
            ))
        }
    };
    let now = app.now();
    if !b.hours.is_open(b.tz, now) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "branch_closed",
            format!("branch `{branch}` is closed now"),
        ));
    }
    let (t, replayed) = app.store.issue(b, &request, &key, now).await?;
    if !replayed {
        app.metrics
            .issued
            .with_label_values(&[&b.id, &t.number_service])
            .inc();
    }
    let view = app.ticket_view(&t).await?;
    let r = (
        if replayed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(view),
    )
        .into_response();
    Ok(mark_replayed(r, replayed))
}

/// The ticket `id`, or a 404 that says so.
async fn find_ticket(app: &App, id: &str) -> Result<crate::store::Ticket, ApiError> {
    app.store.ticket(id).await?.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no ticket `{id}`"),
        )
    })
}

async fn track(State(app): State<St>, Path(id): Path<String>) -> ApiResult {
    let t = find_ticket(&app, &id).await?;
    Ok(Json(app.ticket_view(&t).await?).into_response())
}

async fn qr(State(app): State<St>, Path(id): Path<String>) -> ApiResult {
    let t = find_ticket(&app, &id).await?;
    let url = format!("{}/t/{}", app.config.public_url, t.id);
    let code = qrcode::QrCode::new(url.as_bytes())
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(160, 160)
        .build();
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn desk_view(
    State(app): State<St>,
    Path((branch, desk)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let b = authorize(&app, &branch, Role::Desk, &headers)?;
    Ok(Json(app.desk_view(b, &desk).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    service: Option<String>,
    desk: Option<String>,
}

async fn desk_action(
    State(app): State<St>,
    Path((branch, desk, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b = authorize(&app, &branch, Role::Desk, &headers)?;
    let d = b.desk(&desk).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no desk `{desk}` in branch `{branch}`"),
        )
    })?;
    let now = app.now();
    // A desk's key is its own: it cannot replay a kiosk's ticket.
    let key = optional_idempotency_key(&headers)?.map(|k| format!("desk:{desk}:{k}"));
    let key = key.as_deref();
    // A replayed press (the same key again) answers as the first did and
    // is not counted twice.
    let (acted, replayed) = match action.as_str() {
        "call-next" => {
            let called = app.store.call_next(b, d, key, now).await?;
            let r = match &called {
                Some((t, replayed)) => {
                    if !replayed {
                        app.metrics.calls.with_label_values(&[&b.id, &d.id]).inc();
                        let waited = (now - t.queued_since) as f64 / 1000.0;
                        app.metrics.wait_seconds.with_label_values(&[&b.id, &t.service]).observe(waited);
                    }
                    Json(json!({"called": app.ticket_view(t).await?})).into_response()
                }
                None => Json(json!({"called": null, "message": "nobody waits for this desk's services"})).into_response(),
            };
            return Ok(mark_replayed(r, called.is_some_and(|(_, replayed)| replayed)));
        }
        "recall" => app.store.desk_action(b, &desk, DeskAction::Recall, key, now).await?,
        "start" => app.store.desk_action(b, &desk, DeskAction::Start, key, now).await?,
        "finish" => app.store.desk_action(b, &desk, DeskAction::Finish, key, now).await?,
        "no-show" => {
            let (t, replayed) = app.store.desk_action(b, &desk, DeskAction::NoShow, key, now).await?;
            if !replayed {
                app.metrics.no_shows.with_label_values(&[&b.id, &t.service]).inc();
            }
            (t, replayed)
        }
        "transfer" => {
            let req: TransferBody = body(&bytes)?;
            let to = match (req.service, req.desk) {
                (Some(s), None) if b.service(&s).is_some() => TransferTo::Service(s),
                (None, Some(x)) if b.desk(&x).is_some() && x != desk => TransferTo::Desk(x),
                (Some(s), None) => return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "unknown_service", format!("branch `{branch}` has no service `{s}`"))),
                (None, Some(x)) => return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "unknown_desk", format!("cannot transfer from desk {desk} to `{x}`"))),
                _ => return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "give either `service` or `desk`".into())),
            };
            app.store.transfer(b, &desk, &to, key, now).await?
        }
        "open" | "close" => {
            let replayed = app.store.set_desk_open(b, &desk, action == "open", key, now).await?;
            return Ok(mark_replayed(Json(app.desk_view(b, &desk).await?).into_response(), replayed));
        }
        other => return Err(ApiError(StatusCode::NOT_FOUND, "not_found", format!("no desk action `{other}`: call-next, recall, start, finish, no-show, transfer, open or close"))),
    };
    Ok(mark_replayed(
        Json(app.ticket_view(&acted).await?).into_response(),
        replayed,
    ))
}

/// Marks an answer to a repeated `Idempotency-Key` as a replay.
fn mark_replayed(mut r: Response, replayed: bool) -> Response {
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BookingBody {
    service: String,
    /// RFC 3339, for example `2026-11-25T10:30:00+01:00`.
    slot: String,
}

async fn create_booking(
    State(app): State<St>,
    Path(branch): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b = authorize(&app, &branch, Role::Manager, &headers)?;
    let req: BookingBody = body(&bytes)?;
    if b.service(&req.service).is_none() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_service",
            format!("branch `{branch}` has no service `{}`", req.service),
        ));
    }
    let slot = chrono::DateTime::parse_from_rfc3339(&req.slot)
        .map_err(|e| {
            ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_slot",
                format!("slot `{}` is not an RFC 3339 time: {e}", req.slot),
            )
        })?
        .timestamp_millis();
    let booking = app
        .store
        .create_booking(b, &req.service, slot, app.now())
        .await?;
    Ok((StatusCode::CREATED, Json(booking)).into_response())
}

async fn cancel_booking(
    State(app): State<St>,
    Path((branch, code)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let b = authorize(&app, &branch, Role::Manager, &headers)?;
    app.store
        .cancel_booking(b, &code.to_ascii_uppercase())
        .await?;
    Ok(Json(json!({"code": code, "status": "cancelled"})).into_response())
}

#[derive(Deserialize)]
struct StatsQuery {
    day: Option<String>,
}

async fn stats(
    State(app): State<St>,
    Path(branch): Path<String>,
    Query(q): Query<StatsQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let b = authorize(&app, &branch, Role::Manager, &headers)?;
    let day = q.day.unwrap_or_else(|| app.today(b));
    if chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").is_err() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_day",
            format!("day `{day}` is not YYYY-MM-DD"),
        ));
    }
    Ok(Json(app.stats_view(b, &day).await?).into_response())
}

/// A stream of `event` messages: `view()` now, then after every change of
/// `branch` (changes that come while one is computed are folded into the
/// next).
fn live<F, Fut>(
    app: St,
    branch: String,
    event: &'static str,
    view: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: Fn(St) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Value, ApiError>> + Send,
{
    let rx = app.changes.get(&branch).map(|tx| tx.subscribe());
    let stream = futures_util::stream::unfold(
        (rx, true, app, view),
        move |(mut rx, first, app, view)| async move {
            if !first {
                let r = rx.as_mut()?;
                loop {
                    match r.recv().await {
                        Ok(()) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    }
                }
                while r.try_recv().is_ok() {}
            }
            let data = match view(app.clone()).await {
                Ok(v) => v,
                Err(ApiError(_, code, message)) => json!({"error": code, "message": message}),
            };
            let ev = Event::default().event(event).data(data.to_string());
            Some((Ok(ev), (rx, false, app, view)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn board_events(
    State(app): State<St>,
    Path(branch): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.branch(&branch)?;
    let b = branch.clone();
    Ok(live(app, branch, "board", move |app| {
        let b = b.clone();
        async move { Ok(app.board_view(app.branch(&b)?).await?) }
    }))
}

async fn track_events(
    State(app): State<St>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let t = find_ticket(&app, &id).await?;
    Ok(live(app, t.branch.clone(), "ticket", move |app| {
        let id = id.clone();
        async move {
            let t = find_ticket(&app, &id).await?;
            Ok(serde_json::to_value(app.ticket_view(&t).await?).unwrap_or_default())
        }
    }))
}

async fn desk_events(
    State(app): State<St>,
    Path((branch, desk)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&app, &branch, Role::Desk, &headers)?;
    let b = branch.clone();
    Ok(live(app, branch, "desk", move |app| {
        let (b, desk) = (b.clone(), desk.clone());
        async move { Ok(app.desk_view(app.branch(&b)?, &desk).await?) }
    }))
}

#[cfg(test)]
mod tests {
    /// The OpenAPI document names every route of the router (and every
    /// desk action), so it cannot fall behind the code unnoticed.
    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        // The routes of the public router (`router`): the metrics
        // listener's `/metrics` is not part of the API.
        let source = include_str!("api.rs");
        let public = source.split("pub fn router(").nth(1).unwrap();
        let public = &public[..public.find("\n}\n").unwrap()];
        assert!(
            !paths.contains_key("/metrics"),
            "/metrics is not on the API's listener"
        );
        let routes: Vec<&str> = public
            .split(".route(")
            .skip(1)
            .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
            .filter(|r| r.starts_with('/'))
            .collect();
        assert!(routes.len() >= 15, "{routes:?}");
        let actions = [
            "call-next",
            "recall",
            "start",
            "finish",
            "no-show",
            "transfer",
            "open",
            "close",
        ];
        for r in routes {
            match r.strip_suffix("/{action}") {
                Some(desk) => {
                    for a in actions {
                        assert!(
                            paths.contains_key(&format!("{desk}/{a}")),
                            "{desk}/{a} is not documented"
                        );
                    }
                }
                None => assert!(paths.contains_key(r), "{r} is not documented"),
            }
        }
    }
}
