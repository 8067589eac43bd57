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

/// Lets `req` through only with `Authorization: Bearer <expected>` (none
/// expected: nobody passes), and writes every call to `audit` as
/// `METHOD /path` with its result: `unauthorized` (401), `ok` (2xx) or
/// `refused`.
pub async fn authorize_and_audit(
    expected: Option<&[u8]>,
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
    let ok = expected.is_some_and(|want| crate::token::authorized(want, authorization));
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
