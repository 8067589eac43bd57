//! The admin status page in a real browser (Debian's headless Chromium,
//! driven through chromedriver's WebDriver API): during a failover it shows
//! the new primary without a reload.

use devtools::browser::{wait_for_text, Browser};
use devtools::harness::gateway::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_page_shows_the_new_primary_during_a_failover_without_a_reload() {
    let (dir, mut a, b) = twins("page");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    let browser = Browser::start(&dir).await;
    browser
        .go(&format!("http://{}/#token={}", gw.admin, gw.token))
        .await;
    wait_for_text(&browser, "primary", "a", Duration::from_secs(10))
        .await
        .unwrap();
    wait_for_text(&browser, "vrrp", "single", Duration::from_secs(2))
        .await
        .unwrap();
    let loaded_at = browser.eval("return window.twinportLoadedAt;").await;
    assert!(loaded_at.is_number());
    // The token left the address bar once read.
    assert_eq!(browser.eval("return location.hash;").await, "");

    a.crash();
    let took = wait_for_text(&browser, "primary", "b", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        browser.eval("return window.twinportLoadedAt;").await,
        loaded_at,
        "no reload happened"
    );
    let card = browser
        .eval("return document.getElementById('node-a').textContent;")
        .await;
    assert!(card.as_str().unwrap().contains("down"), "{card}");
    let rows = browser
        .eval("return document.getElementById('transitions').textContent;")
        .await;
    assert!(rows.as_str().unwrap().contains("failover a → b"), "{rows}");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    browser.screenshot(&shot).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    println!(
        "status page showed the failover after {took:?}; screenshot {}",
        shot.display()
    );

    // A wrong token gets the login form, not data.
    browser.go("about:blank").await;
    browser
        .go(&format!(
            "http://{}/#token=wrong-token-0123456789",
            gw.admin
        ))
        .await;
    wait_for_text(
        &browser,
        "error",
        "The token was refused.",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
}
