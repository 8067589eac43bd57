//! The admin status page in a real browser (Debian's headless Chromium,
//! driven through chromedriver's WebDriver API): during a failover it shows
//! the new primary without a reload.

mod common;

use common::*;
use devtools::{free_port, wait_for_port, Proc, TempDir};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// One WebDriver call: POST a JSON body, the JSON answer.
async fn post_json(client: &reqwest::Client, url: String, body: &Value) -> Value {
    let r = client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("chromedriver answers");
    r.json().await.expect("chromedriver answers JSON")
}

struct Browser {
    base: String,
    session: String,
    client: reqwest::Client,
    _driver: Proc,
}

impl Browser {
    async fn start(dir: &TempDir) -> Browser {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: scripts/test installs Debian's chromium and chromium-driver"
            );
        }
        let port = free_port();
        let mut cmd = Command::new("/usr/bin/chromedriver");
        cmd.arg(format!("--port={port}"));
        let driver = Proc::spawn(
            "chromedriver",
            cmd,
            Some(&dir.path().join("chromedriver.log")),
        );
        assert!(wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10)
        ));
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let profile = dir.path().join("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = post_json(&client, format!("{base}/session"), &caps).await;
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Browser {
            base,
            session,
            client,
            _driver: driver,
        }
    }

    async fn cmd(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        post_json(&self.client, url, &body).await["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd("/url", json!({ "url": url })).await;
    }

    async fn eval(&self, script: &str) -> Value {
        self.cmd("/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let url = format!("{}/session/{}/screenshot", self.base, self.session);
        let v: Value = self
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let b64 = v["value"].as_str().unwrap_or_default();
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
            .expect("a PNG in base64");
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver's Drop kills it; ask it to close Chromium first.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::process::Command::new("curl")
            .args(["-s", "-X", "DELETE", &url])
            .output();
    }
}

async fn wait_for_text(
    b: &Browser,
    id: &str,
    want: &str,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < timeout {
        last = b
            .eval(&format!(
                "const e = document.getElementById('{id}'); return e ? e.textContent : null;"
            ))
            .await;
        if last == want {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("#{id} shows {last}, not {want}"))
}

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
