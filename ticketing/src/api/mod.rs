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

mod doc;

pub use doc::document;

use crate::app::App;
use crate::config::Branch;
use crate::store::{DeskAction, IssueRequest, StoreError, TransferTo};
use crate::views::{Called, Cancelled, ErrorBody, Liveness, Readiness};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

type St = Arc<App>;

/// Largest request body.
const MAX_BODY: usize = 8 * 1024;

pub fn router(app: St) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/live", get(live_probe))
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
            "/api/v1/branches/{branch}/desks/{desk}/call-next",
            post(call_next),
        )
        .route(
            "/api/v1/branches/{branch}/desks/{desk}/recall",
            post(recall),
        )
        .route("/api/v1/branches/{branch}/desks/{desk}/start", post(start))
        .route(
            "/api/v1/branches/{branch}/desks/{desk}/finish",
            post(finish),
        )
        .route(
            "/api/v1/branches/{branch}/desks/{desk}/no-show",
            post(no_show),
        )
        .route(
            "/api/v1/branches/{branch}/desks/{desk}/transfer",
            post(transfer),
        )
        .route("/api/v1/branches/{branch}/desks/{desk}/open", post(open))
        .route("/api/v1/branches/{branch}/desks/{desk}/close", post(close))
        // Any other action: a 404 that lists the actions (after the token).
        .route(
            "/api/v1/branches/{branch}/desks/{desk}/{action}",
            post(unknown_press),
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

/// Readiness for the gateway: 200 when the store answers, else 503.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "the store does not answer", body = Readiness),
    ))]
async fn ready(State(app): State<St>) -> Response {
    let node = app.config.node.clone();
    match app.store.ping().await {
        Ok(()) => Json(Readiness {
            node,
            state: "ready".into(),
            weight: Some(100),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            reason: None,
        })
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                node,
                state: "unhealthy".into(),
                weight: None,
                version: None,
                reason: Some(format!("{e}")),
            }),
        )
            .into_response(),
    }
}

/// The process runs.
#[utoipa::path(get, path = "/live", tag = "service",
    responses((status = 200, description = "alive", body = Liveness)))]
async fn live_probe() -> Json<Liveness> {
    Json(Liveness { alive: true })
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

/// This document (generated from the code; `ticketing openapi` prints it).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi() -> Response {
    static DOC: std::sync::LazyLock<String> = std::sync::LazyLock::new(document);
    ([(header::CONTENT_TYPE, "application/json")], DOC.as_str()).into_response()
}

/// Branch, services with waiting counts, open desks and estimates
/// (`estimated_wait_seconds` null while no open desk serves the service),
/// priority groups, desks.
#[utoipa::path(get, path = "/api/v1/branches/{branch}", tag = "public",
    params(doc::BranchPath),
    responses((status = 200, body = crate::views::BranchView), doc::NotFound))]
async fn branch_info(State(app): State<St>, Path(branch): Path<String>) -> ApiResult {
    let b = app.branch(&branch)?;
    Ok(Json(app.branch_view(b).await?).into_response())
}

/// Board: recent calls and waiting per service (no personal data).
#[utoipa::path(get, path = "/api/v1/branches/{branch}/board", tag = "public",
    params(doc::BranchPath),
    responses((status = 200, body = crate::views::BoardView), doc::NotFound))]
async fn board(State(app): State<St>, Path(branch): Path<String>) -> ApiResult {
    let b = app.branch(&branch)?;
    Ok(Json(app.board_view(b).await?).into_response())
}

/// A ticket for a service (optionally in a priority group), or the
/// check-in of a booking by its code: `service` or `booking_code`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IssueRequest)]
struct IssueBody {
    #[schema(example = "A")]
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

/// Issue a ticket for a service, or check in a booking by its code. The
/// same `Idempotency-Key` always returns the same ticket (201 first, 200
/// with `Idempotent-Replayed: true` after).
#[utoipa::path(post, path = "/api/v1/branches/{branch}/tickets", tag = "kiosk",
    params(doc::BranchPath, doc::IdempotencyKey),
    request_body = IssueBody,
    responses(
        (status = 201, description = "issued", body = crate::views::TicketView),
        (status = 200, description = "the replay of the same key", body = crate::views::TicketView),
        (status = 429, description = "more ticket requests per second from this kiosk than `kiosk_rate_limit`; see Retry-After", body = ErrorBody),
        doc::ChangeErrors,
    ),
    security(("kiosk" = [])))]
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

/// Tracking: status, position, estimate, desk.
#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "public",
    params(doc::TicketPath),
    responses((status = 200, body = crate::views::TicketView), doc::NotFound))]
async fn track(State(app): State<St>, Path(id): Path<String>) -> ApiResult {
    let t = find_ticket(&app, &id).await?;
    Ok(Json(app.ticket_view(&t).await?).into_response())
}

/// QR code of the ticket's tracking URL.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/qr.svg", tag = "public",
    params(doc::TicketPath),
    responses((status = 200, description = "an SVG image", content_type = "image/svg+xml"), doc::NotFound))]
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

/// Desk console: its current ticket, its queues, where it can transfer.
#[utoipa::path(get, path = "/api/v1/branches/{branch}/desks/{desk}", tag = "desk",
    params(doc::DeskPath),
    responses((status = 200, body = crate::views::DeskView), doc::ReadErrors),
    security(("desk" = [])))]
async fn desk_view(
    State(app): State<St>,
    Path((branch, desk)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let b = authorize(&app, &branch, Role::Desk, &headers)?;
    Ok(Json(app.desk_view(b, &desk).await?).into_response())
}

/// Where to: another service, or another desk (`service` or `desk`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TransferRequest)]
struct TransferBody {
    service: Option<String>,
    desk: Option<String>,
}

/// What a desk can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Press {
    CallNext,
    Recall,
    Start,
    Finish,
    NoShow,
    Transfer,
    Open,
    Close,
}

/// One desk press as a route of its own: documented with its own answer.
macro_rules! desk_press {
    ($(#[$doc:meta])* $name:ident, $press:expr, $path:literal, $ok:ty $(, $body:ty)?) => {
        $(#[$doc])*
        #[utoipa::path(post, path = $path, tag = "desk",
            params(doc::DeskPath, doc::IdempotencyKey),
            $(request_body = $body,)?
            responses(
                (status = 200, description = "done, or the replay of the same key (`Idempotent-Replayed: true`)", body = $ok),
                doc::ChangeErrors,
            ),
            security(("desk" = [])))]
        async fn $name(
            State(app): State<St>,
            Path((branch, desk)): Path<(String, String)>,
            headers: HeaderMap,
            bytes: Bytes,
        ) -> ApiResult {
            press(app, &branch, &desk, $press, &headers, &bytes).await
        }
    };
}

desk_press!(
    /// Call the next visitor by the queue rules (priorities, bookings
    /// window, fair interleaving, escalation); `called` is null when
    /// nobody waits for the desk's services.
    call_next, Press::CallNext, "/api/v1/branches/{branch}/desks/{desk}/call-next", Called
);
desk_press!(
    /// Call the current ticket again.
    recall, Press::Recall, "/api/v1/branches/{branch}/desks/{desk}/recall", crate::views::TicketView
);
desk_press!(
    /// Start serving the current ticket.
    start, Press::Start, "/api/v1/branches/{branch}/desks/{desk}/start", crate::views::TicketView
);
desk_press!(
    /// Finish the current ticket.
    finish, Press::Finish, "/api/v1/branches/{branch}/desks/{desk}/finish", crate::views::TicketView
);
desk_press!(
    /// The called visitor did not come.
    no_show, Press::NoShow, "/api/v1/branches/{branch}/desks/{desk}/no-show", crate::views::TicketView
);
desk_press!(
    /// Send the current ticket to another service, or to an open desk
    /// (409 if closed), keeping its waiting time; a ticket sent to a desk
    /// is that desk's alone.
    transfer, Press::Transfer, "/api/v1/branches/{branch}/desks/{desk}/transfer", crate::views::TicketView, TransferBody
);
desk_press!(
    /// Open the desk (it counts in estimates from now).
    open, Press::Open, "/api/v1/branches/{branch}/desks/{desk}/open", crate::views::DeskView
);
desk_press!(
    /// Close the desk; tickets transferred to it go back to their
    /// services' queues.
    close, Press::Close, "/api/v1/branches/{branch}/desks/{desk}/close", crate::views::DeskView
);

/// An action the desk API does not have: 404 naming those it has (after
/// the token is checked, as for the others).
async fn unknown_press(
    State(app): State<St>,
    Path((branch, _desk, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&app, &branch, Role::Desk, &headers)?;
    Err(ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no desk action `{action}`: call-next, recall, start, finish, no-show, transfer, open or close"),
    ))
}

async fn press(
    app: St,
    branch: &str,
    desk: &str,
    press: Press,
    headers: &HeaderMap,
    bytes: &Bytes,
) -> ApiResult {
    let b = authorize(&app, branch, Role::Desk, headers)?;
    let d = b.desk(desk).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no desk `{desk}` in branch `{branch}`"),
        )
    })?;
    let now = app.now();
    // A desk's key is its own: it cannot replay a kiosk's ticket.
    let key = optional_idempotency_key(headers)?.map(|k| format!("desk:{desk}:{k}"));
    let key = key.as_deref();
    // A replayed press (the same key again) answers as the first did and
    // is not counted twice.
    let (acted, replayed) = match press {
        Press::CallNext => return call_next_answer(&app, b, d, key, now).await,
        Press::Recall | Press::Start | Press::Finish | Press::NoShow => {
            let action = match press {
                Press::Recall => DeskAction::Recall,
                Press::Start => DeskAction::Start,
                Press::Finish => DeskAction::Finish,
                _ => DeskAction::NoShow,
            };
            let (t, replayed) = app.store.desk_action(b, desk, action, key, now).await?;
            if press == Press::NoShow && !replayed {
                app.metrics
                    .no_shows
                    .with_label_values(&[&b.id, &t.service])
                    .inc();
            }
            (t, replayed)
        }
        Press::Transfer => {
            let to = transfer_target(b, desk, bytes)?;
            app.store.transfer(b, desk, &to, key, now).await?
        }
        Press::Open | Press::Close => {
            let replayed = app
                .store
                .set_desk_open(b, desk, press == Press::Open, key, now)
                .await?;
            return Ok(mark_replayed(
                Json(app.desk_view(b, desk).await?).into_response(),
                replayed,
            ));
        }
    };
    Ok(mark_replayed(
        Json(app.ticket_view(&acted).await?).into_response(),
        replayed,
    ))
}

/// Calls the next visitor for desk `d`: the answer, counted once.
async fn call_next_answer(
    app: &App,
    b: &Branch,
    d: &crate::config::Desk,
    key: Option<&str>,
    now: crate::calendar::Millis,
) -> ApiResult {
    let called = app.store.call_next(b, d, key, now).await?;
    let answer = match &called {
        Some((t, replayed)) => {
            if !replayed {
                app.metrics.calls.with_label_values(&[&b.id, &d.id]).inc();
                let waited = (now - t.queued_since) as f64 / 1000.0;
                app.metrics
                    .wait_seconds
                    .with_label_values(&[&b.id, &t.service])
                    .observe(waited);
            }
            Called {
                called: Some(app.ticket_view(t).await?),
                message: None,
            }
        }
        None => Called {
            called: None,
            message: Some("nobody waits for this desk's services".into()),
        },
    };
    let replayed = called.is_some_and(|(_, replayed)| replayed);
    Ok(mark_replayed(Json(answer).into_response(), replayed))
}

/// Where a transfer from `desk` goes: a service of the branch, or another
/// of its desks.
fn transfer_target(b: &Branch, desk: &str, bytes: &Bytes) -> Result<TransferTo, ApiError> {
    let req: TransferBody = body(bytes)?;
    let invalid = |code, message| Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, code, message));
    match (req.service, req.desk) {
        (Some(s), None) if b.service(&s).is_some() => Ok(TransferTo::Service(s)),
        (None, Some(x)) if b.desk(&x).is_some() && x != desk => Ok(TransferTo::Desk(x)),
        (Some(s), None) => invalid(
            "unknown_service",
            format!("branch `{}` has no service `{s}`", b.id),
        ),
        (None, Some(x)) => invalid(
            "unknown_desk",
            format!("cannot transfer from desk {desk} to `{x}`"),
        ),
        _ => invalid("invalid", "give either `service` or `desk`".into()),
    }
}

/// Marks an answer to a repeated `Idempotency-Key` as a replay.
fn mark_replayed(mut r: Response, replayed: bool) -> Response {
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

/// A visit booked for a service at a time slot.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BookingRequest)]
struct BookingBody {
    service: String,
    /// RFC 3339, for example `2026-11-25T10:30:00+01:00`.
    #[schema(format = DateTime, example = "2026-11-25T10:30:00+01:00")]
    slot: String,
}

/// Create a booking (a code, no personal data); the visitor checks in
/// with the code at a kiosk.
#[utoipa::path(post, path = "/api/v1/branches/{branch}/bookings", tag = "manager",
    params(doc::BranchPath),
    request_body = BookingBody,
    responses((status = 201, description = "booked", body = crate::store::Booking), doc::ChangeErrors),
    security(("manager" = [])))]
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

/// Cancel a booking.
#[utoipa::path(delete, path = "/api/v1/branches/{branch}/bookings/{code}", tag = "manager",
    params(doc::BookingPath),
    responses((status = 200, description = "cancelled", body = Cancelled), doc::ChangeErrors),
    security(("manager" = [])))]
async fn cancel_booking(
    State(app): State<St>,
    Path((branch, code)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let b = authorize(&app, &branch, Role::Manager, &headers)?;
    app.store
        .cancel_booking(b, &code.to_ascii_uppercase())
        .await?;
    Ok(Json(Cancelled {
        code,
        status: "cancelled".into(),
    })
    .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StatsQuery {
    /// The branch-local day, YYYY-MM-DD; today by default.
    day: Option<String>,
}

/// Statistics of a day: waiting and service times, share within target,
/// no-shows, tickets not served when the day closed (with their waiting
/// time), per hour.
#[utoipa::path(get, path = "/api/v1/branches/{branch}/stats", tag = "manager",
    params(doc::BranchPath, StatsQuery),
    responses((status = 200, body = crate::views::StatsView), doc::ReadErrors),
    security(("manager" = [])))]
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
fn live<F, Fut, T>(
    app: St,
    branch: String,
    event: &'static str,
    view: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: Fn(St) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send,
    T: Serialize,
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
                Ok(v) => serde_json::to_string(&v),
                Err(ApiError(_, code, message)) => serde_json::to_string(&ErrorBody {
                    error: code.into(),
                    message,
                }),
            };
            let ev = Event::default().event(event).data(data.unwrap_or_default());
            Some((Ok(ev), (rx, false, app, view)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Server-sent events `board`: the board now and after every change.
#[utoipa::path(get, path = "/api/v1/branches/{branch}/board/events", tag = "public",
    params(doc::BranchPath),
    responses((status = 200, description = "`text/event-stream` of `board` events, each a Board", content_type = "text/event-stream"), doc::NotFound))]
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

/// Server-sent events `ticket`: the ticket now and after every change.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/events", tag = "public",
    params(doc::TicketPath),
    responses((status = 200, description = "`text/event-stream` of `ticket` events, each a Ticket", content_type = "text/event-stream"), doc::NotFound))]
async fn track_events(
    State(app): State<St>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let t = find_ticket(&app, &id).await?;
    Ok(live(app, t.branch.clone(), "ticket", move |app| {
        let id = id.clone();
        async move {
            let t = find_ticket(&app, &id).await?;
            Ok(app.ticket_view(&t).await?)
        }
    }))
}

/// Server-sent events `desk`: the desk console now and after every change.
#[utoipa::path(get, path = "/api/v1/branches/{branch}/desks/{desk}/events", tag = "desk",
    params(doc::DeskPath),
    responses((status = 200, description = "`text/event-stream` of `desk` events, each a Desk", content_type = "text/event-stream"), doc::ReadErrors),
    security(("desk" = [])))]
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
    /// The OpenAPI document names every route of the router and nothing
    /// else, so it cannot fall behind the code unnoticed.
    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        // The routes of the public router (`router`): the metrics
        // listener's `/metrics` is not part of the API.
        let source = include_str!("mod.rs");
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
            // The catch-all that answers 404 for an unknown desk action.
            .filter(|r| !r.ends_with("/{action}"))
            .collect();
        assert!(routes.len() >= 22, "{routes:?}");
        for r in &routes {
            assert!(paths.contains_key(*r), "{r} is not documented");
        }
        for p in paths.keys() {
            assert!(
                routes.contains(&p.as_str()),
                "{p} is documented but no route"
            );
        }
    }
}
