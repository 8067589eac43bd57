//! The pieces of a control API that every daemon answers the same way
//! (axum): JSON errors, and the bearer-token check with its audit entry.

use crate::audit::AuditLog;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::net::SocketAddr;

/// `{"error": code, "message": message}` with `status`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// The tokens of a control API: the operator's, which may do anything,
/// and optionally a read-only one, which may only read (`GET`, `HEAD`):
/// for dashboards, monitoring and people on call who should not change
/// anything.
#[derive(Clone, Copy, Default)]
pub struct Tokens<'a> {
    pub operator: Option<&'a [u8]>,
    pub read_only: Option<&'a [u8]>,
}

/// Lets `req` through only with `Authorization: Bearer <token>` of one of
/// `tokens` (none configured: nobody passes; the read-only token only for
/// `GET` and `HEAD`, else 403), and writes every call to `audit` as
/// `METHOD /path` with its result: `unauthorized` (401), `forbidden`
/// (403), `ok` (2xx) or `refused`.
pub async fn authorize_and_audit(
    tokens: Tokens<'_>,
    audit: &AuditLog,
    caller: SocketAddr,
    req: Request,
    next: Next,
) -> Response {
    let action = format!("{} {}", req.method(), req.uri().path());
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let is = |t: Option<&[u8]>| t.is_some_and(|want| crate::token::authorized(want, authorization));
    let operator = is(tokens.operator);
    let reader = !operator && is(tokens.read_only);
    let reads = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if reader && !reads {
        audit.record(caller, &action, "forbidden", 403);
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may only read (GET); changes need the operator token",
        );
    }
    let ok = operator || reader;
    if !ok {
        audit.record(caller, &action, "unauthorized", 401);
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is needed",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let response = next.run(req).await;
    let status = response.status();
    let result = if status.is_success() { "ok" } else { "refused" };
    audit.record(caller, &action, result, status.as_u16());
    response
}
