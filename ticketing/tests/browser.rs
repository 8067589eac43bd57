//! The pages in a real browser (Debian's headless Chromium through
//! chromedriver): a touch on the kiosk issues a ticket, and a desk's
//! "call next" appears on an open display board within a second.

use devtools::browser::{wait_for_text, Browser};
use devtools::harness::ticketing::*;
use devtools::TempDir;
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kiosk_touch_issues_a_ticket_and_the_board_shows_its_call_within_a_second() {
    let dir = TempDir::new("tk-browser");
    let t = Ticketing::start(&dir, "a", None);
    let browser = Browser::start(&dir).await;

    // The waiting room's board, open before anything happens.
    browser.go(&t.url("/board/centrum")).await;
    let board_tab = browser.new_tab().await;

    // The kiosk: its token from the fragment, then one touch on service A.
    browser
        .go(&t.url(&format!("/kiosk/centrum#token={KIOSK}")))
        .await;
    let loaded = Instant::now();
    while browser
        .eval("return !!document.querySelector(\"button[data-service='A']\");")
        .await
        != Value::Bool(true)
    {
        assert!(
            loaded.elapsed() < Duration::from_secs(10),
            "the kiosk page did not show its services"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        browser.eval("return location.hash;").await,
        "",
        "the token left the address bar"
    );
    browser.click("button[data-service='A']").await;
    wait_for_text(&browser, "ticket-number", "A001", Duration::from_secs(5))
        .await
        .unwrap();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiosk-ticket.png");
    browser.screenshot(&shot).await;
    let qr_loaded = browser.eval("const i = document.querySelector('img.qr'); return i && i.complete && i.naturalWidth > 0;").await;
    assert_eq!(
        qr_loaded,
        Value::Bool(true),
        "the ticket's QR code is shown"
    );

    // The desk calls; the board shows it.
    browser.switch_to(&board_tab).await;
    let c = reqwest::Client::new();
    let called_at = Instant::now();
    let (s, v) = call(
        &c,
        "POST",
        &t.url("/api/v1/branches/centrum/desks/1/call-next"),
        Some(DESK),
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, v["called"]["display"].as_str()),
        (200, Some("A001")),
        "{v}"
    );
    let shown = loop {
        let top = browser.eval("const e = document.querySelector('#calls li.newest'); return e ? e.dataset.display : null;").await;
        if top == "A001" {
            break called_at.elapsed();
        }
        assert!(
            called_at.elapsed() < Duration::from_secs(3),
            "the board shows {top}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        shown < Duration::from_secs(1),
        "the board showed the call after {shown:?}"
    );
    let text = browser
        .eval("return document.getElementById('calls').textContent;")
        .await;
    assert!(text.as_str().unwrap().contains("Stanowisko 1"), "{text}");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("board.png");
    browser.screenshot(&shot).await;
    println!(
        "the board showed A001 {shown:?} after the call; screenshots in {}",
        shot.parent().unwrap().display()
    );
}

/// Every page in Polish and in English, as a person sees it: no text on
/// the screen reads `null`, `undefined` or `NaN`, and while no desk is
/// open the kiosk promises no minutes (it says that no desk is open);
/// once a desk opens it does give minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_page_shows_null_undefined_or_nan_and_no_minutes_without_a_desk() {
    let dir = TempDir::new("tk-browser-pages");
    let t = Ticketing::start(&dir, "a", None);
    let c = reqwest::Client::new();
    // A queue of 6 for A, one ticket to follow, one visitor at desk 2.
    let mut ticket = Value::Null;
    for i in 0..6 {
        let (s, v) = call(
            &c,
            "POST",
            &t.url("/api/v1/branches/centrum/tickets"),
            Some(KIOSK),
            Some(&format!("pages-{i}")),
            Some(r#"{"service":"A"}"#),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        ticket = v;
    }
    let browser = Browser::start(&dir).await;
    // Everything the page shows as text, once `ready` (a CSS selector) is on it.
    let visible_text = |url: String, ready: &'static str| {
        let browser = &browser;
        async move {
            browser.go(&url).await;
            let start = Instant::now();
            loop {
                let found = browser
                    .eval(&format!(
                        "return !!document.querySelector({ready:?}) && !document.querySelector('.loading');"
                    ))
                    .await;
                if found == Value::Bool(true) {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{url}: {ready} never shown"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Live pages fill in after their first event.
            tokio::time::sleep(Duration::from_millis(400)).await;
            let text = browser
                .eval(
                    "const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT); \
                     const out = []; while (w.nextNode()) out.push(w.currentNode.textContent); \
                     for (const e of document.querySelectorAll('[placeholder],[alt],[title],[value]')) \
                       for (const a of ['placeholder', 'alt', 'title', 'value']) if (e.getAttribute(a)) out.push(e.getAttribute(a)); \
                     return out.join('\\n');",
                )
                .await;
            text.as_str().unwrap_or_default().to_string()
        }
    };
    let id = ticket["id"].as_str().unwrap();
    let bad = regex_words(&["null", "undefined", "NaN"]);
    for lang in ["pl", "en"] {
        let q = format!("?lang={lang}");
        let pages = [
            (
                format!("/kiosk/centrum{q}#token={KIOSK}"),
                "button[data-service='A']",
            ),
            (format!("/board/centrum{q}"), "#calls"),
            (format!("/desk/centrum/2{q}#token={DESK}"), "#queues"),
            (format!("/t/{id}{q}"), "#track-status"),
            (
                format!("/stats/centrum{q}#token={MANAGER}"),
                "#stats-services",
            ),
        ];
        for (path, ready) in pages {
            let text = visible_text(t.url(&path), ready).await;
            assert!(text.trim().len() > 10, "{path} shows nothing: {text:?}");
            for line in text.lines() {
                assert!(!bad(line), "{path} shows {line:?}");
            }
            if path.starts_with("/kiosk") {
                let a = browser
                    .eval("return document.querySelector(\"button[data-service='A'] .meta\").textContent;")
                    .await;
                let a = a.as_str().unwrap();
                let no_desk = if lang == "pl" {
                    "Żadne stanowisko"
                } else {
                    "No desk"
                };
                assert!(
                    a.contains(no_desk) && !a.contains("min"),
                    "{path}: A says {a:?}"
                );
            }
        }
    }
    // Desk 1 (A first) opens: the kiosk now gives minutes for A's queue of 6.
    let (s, _) = call(
        &c,
        "POST",
        &t.url("/api/v1/branches/centrum/desks/1/open"),
        Some(DESK),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    visible_text(
        t.url(&format!("/kiosk/centrum?lang=en#token={KIOSK}")),
        "button[data-service='A']",
    )
    .await;
    let a = browser
        .eval("return document.querySelector(\"button[data-service='A'] .meta\").textContent;")
        .await;
    let a = a.as_str().unwrap();
    assert!(
        a.starts_with("6 waiting · ~") && a.ends_with(" min"),
        "A says {a:?}"
    );
}

/// Whether `line` holds one of `words` as a word of its own.
fn regex_words(words: &'static [&'static str]) -> impl Fn(&str) -> bool {
    move |line: &str| {
        line.split(|c: char| !c.is_alphanumeric())
            .any(|w| words.contains(&w))
    }
}
