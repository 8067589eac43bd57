//! A headless Chromium (Debian's `chromium` and `chromium-driver`) driven
//! through chromedriver's WebDriver API, for tests of our pages as a
//! person sees them.

use crate::{free_port, wait_for_port, Proc, TempDir};
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

pub struct Browser {
    base: String,
    session: String,
    client: reqwest::Client,
    _driver: Proc,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (profile in `dir`).
    pub async fn start(dir: &TempDir) -> Browser {
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

    /// One WebDriver command on the session.
    pub async fn cmd(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        post_json(&self.client, url, &body).await["value"].clone()
    }

    /// A WebDriver GET on the session.
    pub async fn get(&self, path: &str) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let v: Value = self
            .client
            .get(url)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON");
        v["value"].clone()
    }

    /// Clicks the element `css` selects, as a pointer would.
    pub async fn click(&self, css: &str) {
        let e = self
            .cmd("/element", json!({"using": "css selector", "value": css}))
            .await;
        let id = e
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {e}"))
            .to_string();
        self.cmd(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Opens a new tab and switches to it; the handle of the old one.
    pub async fn new_tab(&self) -> String {
        let old = self
            .get("/window")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string();
        let v = self.cmd("/window/new", json!({"type": "tab"})).await;
        self.switch_to(v["handle"].as_str().expect("a new window handle"))
            .await;
        old
    }

    pub async fn switch_to(&self, handle: &str) {
        self.cmd("/window", json!({"handle": handle})).await;
    }

    pub async fn go(&self, url: &str) {
        self.cmd("/url", json!({ "url": url })).await;
    }

    /// Runs `script` in the page; its return value.
    pub async fn eval(&self, script: &str) -> Value {
        self.cmd("/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
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

/// Waits until the element `#id` shows `want`; how long it took.
pub async fn wait_for_text(
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
