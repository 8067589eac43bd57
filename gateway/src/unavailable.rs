//! Answers the gateway writes itself when no node can serve a request.
//!
//! Browsers get a small HTML page, everything else JSON, chosen by the
//! `Accept` header. A 503 carries `Retry-After`, and nothing here may be
//! cached: the outage is meant to be short.

use bytes::Bytes;
use pingora::http::ResponseHeader;

/// True when the client prefers HTML (a browser), false for API clients.
pub fn wants_html(accept: Option<&[u8]>) -> bool {
    let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return false;
    };
    let rank = |needle: &str| {
        accept.split(',').position(|part| {
            let media = part.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case(needle)
        })
    };
    match (rank("text/html"), rank("application/json")) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The error code, page heading and message of a status.
fn reason(status: u16) -> (&'static str, &'static str, &'static str) {
    match status {
        431 => (
            "request_header_fields_too_large",
            "Request headers too large",
            "The request's headers are larger than the service accepts.",
        ),
        413 => (
            "payload_too_large",
            "Request too large",
            "The request is larger than the service accepts.",
        ),
        429 => (
            "too_many_requests",
            "Too many requests",
            "Too many requests came from your address. Please wait a moment and try again.",
        ),
        503 => (
            "service_unavailable",
            "We will be right back",
            "The service is briefly unavailable while it is being switched over. Please try again in a moment.",
        ),
        504 => (
            "gateway_timeout",
            "We will be right back",
            "The service did not answer in time. Please try again.",
        ),
        _ => (
            "bad_gateway",
            "We will be right back",
            "The service could not complete the request. Please try again.",
        ),
    }
}

/// Builds the header and body of the gateway's own error answer.
pub fn build(status: u16, html: bool, retry_after_secs: Option<u64>) -> (ResponseHeader, Bytes) {
    let (code, heading, message) = reason(status);
    let body = if html {
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{heading}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}</style>\
</head><body><h1>{heading}</h1><p>{message}</p>{}</body></html>\n",
            retry_after_secs
                .map(|s| format!("<p>Retry in about {s} seconds.</p>"))
                .unwrap_or_default()
        )
    } else {
        let mut v = serde_json::json!({ "error": code, "status": status, "message": message });
        if let Some(s) = retry_after_secs {
            v["retry_after_seconds"] = s.into();
        }
        format!("{v}\n")
    };
    let mut h = ResponseHeader::build(status, Some(6)).expect("valid status");
    let ctype = if html {
        "text/html; charset=utf-8"
    } else {
        "application/json"
    };
    // The header names and values below are static and valid.
    let _ = h.insert_header("Content-Type", ctype);
    let _ = h.insert_header("Content-Length", body.len().to_string());
    let _ = h.insert_header("Cache-Control", "no-store");
    let _ = h.insert_header("X-Content-Type-Options", "nosniff");
    let _ = h.insert_header("X-Frame-Options", "DENY");
    let _ = h.insert_header(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    );
    if let Some(s) = retry_after_secs {
        let _ = h.insert_header("Retry-After", s.to_string());
    }
    (h, Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_html_and_api_clients_json() {
        let chrome = b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_html(Some(chrome)));
        assert!(!wants_html(Some(b"application/json")));
        assert!(!wants_html(Some(b"*/*")));
        assert!(!wants_html(None));
        assert!(!wants_html(Some(b"application/json, text/html")));
        assert!(wants_html(Some(b"TEXT/HTML")));
    }

    #[test]
    fn the_503_carries_retry_after_and_a_parsable_body() {
        let (h, body) = build(503, false, Some(5));
        assert_eq!(h.status.as_u16(), 503);
        assert_eq!(h.headers["retry-after"], "5");
        assert_eq!(h.headers["cache-control"], "no-store");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "service_unavailable");
        assert_eq!(v["retry_after_seconds"], 5);
        let (h, body) = build(503, true, Some(5));
        assert!(h.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(std::str::from_utf8(&body).unwrap().contains("<h1>"));
        let (h, _) = build(502, false, None);
        assert!(h.headers.get("retry-after").is_none());
    }
}
