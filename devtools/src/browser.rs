//! A headless Chromium (Debian's `chromium` and `chromium-driver`) driven
//! through chromedriver with fantoccini (WebDriver), for tests of our pages
//! as a person sees them.

use crate::{free_addr, on_free_ports, wait_started, Proc, Started, TempDir};
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Browser {
    client: Client,
    /// chromedriver's address and the session, to end it on drop.
    base: String,
    session: String,
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
        let log = dir.path().join("chromedriver.log");
        // Blocking, as a test's set-up may be.
        let (driver, addr) = on_free_ports("chromedriver", || {
            let addr = free_addr();
            let mut cmd = Command::new("/usr/bin/chromedriver");
            cmd.arg(format!("--port={}", addr.port()));
            let mut driver = Proc::spawn("chromedriver", cmd, Some(&log));
            match wait_started(&mut driver, &[addr], Duration::from_secs(10)) {
                Started::Up => Some((driver, addr)),
                Started::PortTaken => None,
                Started::Failed => panic!("chromedriver did not start: {}", driver.log_text()),
            }
        });
        let base = format!("http://{addr}");
        let profile = dir.path().join("chromium-profile");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&base)
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
        let session = client
            .session_id()
            .await
            .expect("chromedriver answers")
            .expect("a session id");
        Browser {
            client,
            base,
            session,
            _driver: driver,
        }
    }

    /// Clicks the element `css` selects, as a pointer would.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Opens a new tab and switches to it; the handle of the old one.
    pub async fn new_tab(&self) -> String {
        let old = self.client.window().await.expect("the current window");
        let new = self.client.new_window(true).await.expect("a new tab");
        self.client
            .switch_to_window(new.handle)
            .await
            .expect("switching to the new tab");
        old.into()
    }

    pub async fn switch_to(&self, handle: &str) {
        let handle = WindowHandle::try_from(handle).expect("a window handle");
        self.client
            .switch_to_window(handle)
            .await
            .expect("switching windows");
    }

    pub async fn go(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Runs `script` in the page; its return value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver's Drop kills it; ask it to close Chromium first (a
        // drop cannot wait for fantoccini's async close).
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
