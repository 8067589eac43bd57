//! The pages: plain HTML, one script and one style sheet, in Polish with
//! English by `?lang=en`, usable on a touch screen.
//!
//! | page | who | what |
//! | --- | --- | --- |
//! | `/kiosk/{branch}` | visitors | one touch per service, booking code entry, a printable ticket with a QR code |
//! | `/board/{branch}` | the waiting room | live calls with a chime and a spoken announcement |
//! | `/desk/{branch}/{desk}` | a clerk | call next, recall, start, finish, no-show, transfer |
//! | `/t/{ticket}` | a visitor's phone (the QR code) | live position, estimate, the desk when called |
//! | `/stats/{branch}` | the branch manager | waiting and service times, within target, no-shows, per hour |
//!
//! Kiosk, desk and statistics pages read their token from the URL
//! fragment (`#token=...`, which never leaves the browser) or ask for it.

use crate::app::App;
use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { page("index", "", "") }))
        .route(
            "/kiosk/{branch}",
            get(|Path(b): Path<String>| async move { page("kiosk", &b, "") }),
        )
        .route(
            "/board/{branch}",
            get(|Path(b): Path<String>| async move { page("board", &b, "") }),
        )
        .route(
            "/desk/{branch}/{desk}",
            get(|Path((b, d)): Path<(String, String)>| async move { page("desk", &b, &d) }),
        )
        .route(
            "/t/{ticket}",
            get(|Path(t): Path<String>| async move { page("track", "", &t) }),
        )
        .route(
            "/stats/{branch}",
            get(|Path(b): Path<String>| async move { page("stats", &b, "") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Escapes text for an HTML attribute.
fn attr(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The page shell; the script fills it in by `data-page`.
fn page(kind: &str, branch: &str, item: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"pl\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Twinport</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head>\
<body data-page=\"{}\" data-branch=\"{}\" data-item=\"{}\"><main id=\"app\"><p class=\"loading\">…</p></main>\
<script src=\"/assets/app.js\"></script></body></html>\n",
        attr(kind),
        attr(branch),
        attr(item)
    );
    let mut r = Html(html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    // Tokens travel in the URL fragment, which no Referer carries; say so
    // anyway for every other link.
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_url_are_escaped() {
        assert_eq!(
            attr(r#"a"><script>x</script>"#),
            "a&quot;&gt;&lt;script&gt;x&lt;/script&gt;"
        );
    }
}
