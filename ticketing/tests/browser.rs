//! The pages in a real browser (Debian's headless Chromium through
//! chromedriver): a touch on the kiosk issues a ticket, and a desk's
//! "call next" appears on an open display board within a second.

mod support;

use devtools::browser::{wait_for_text, Browser};
use devtools::TempDir;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::*;

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
