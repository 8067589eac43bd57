//! The gateway's own health, as a VRRP check script and systemd's watchdog
//! need it: true only while the proxy answers requests through its own
//! listener and the control loop runs.
//!
//! ```text
//!  self-check task ── GET /.twinport/self-check (secret header) ──▶ proxy listener
//!        │                                 request_filter answers 204 itself
//!        └─ proxy_answered()                 (never reaches a node)
//!  controller loop ── control_alive() at least once a second
//!  GET /healthz (metrics and admin listeners), the systemd watchdog ◀── verdict()
//! ```
//!
//! A hung proxy (its workers stuck) stops answering the self-check; a
//! stuck control loop stops beating; either turns `/healthz` to 503 and
//! stops the watchdog's pings within [`STALE`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The path the self-check asks for; answered only with the right header.
pub const PATH: &str = "/.twinport/self-check";
/// The header carrying this process's secret token.
pub const HEADER: &str = "x-twinport-self-check";
/// How often the proxy is checked.
pub const EVERY: Duration = Duration::from_secs(1);
/// How soon a failed check is tried again (at start, the listener may not
/// accept yet).
const RETRY: Duration = Duration::from_millis(200);
/// A beat older than this is a failure.
pub const STALE: Duration = Duration::from_secs(3);

/// Beats of the proxy and of the control loop.
pub struct SelfHealth {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last beat, plus one (0: never).
    proxy: AtomicU64,
    control: AtomicU64,
    token: String,
}

impl Default for SelfHealth {
    fn default() -> Self {
        use ring::rand::SecureRandom;
        let mut raw = [0u8; 16];
        // Without randomness the token is only less secret: the check
        // still works, and a request with it gets a 204, nothing more.
        let _ = ring::rand::SystemRandom::new().fill(&mut raw);
        SelfHealth {
            epoch: Instant::now(),
            proxy: AtomicU64::new(0),
            control: AtomicU64::new(0),
            token: raw.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// What `/healthz` says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub healthy: bool,
    /// Milliseconds since the proxy last answered its self-check (`None`:
    /// never yet).
    pub proxy_ms: Option<u64>,
    /// Milliseconds since the control loop last ran.
    pub control_ms: Option<u64>,
}

/// Healthy when both beats are younger than `stale`.
pub fn judge(proxy: Option<Duration>, control: Option<Duration>, stale: Duration) -> Verdict {
    let fresh = |d: Option<Duration>| d.is_some_and(|d| d < stale);
    Verdict {
        healthy: fresh(proxy) && fresh(control),
        proxy_ms: proxy.map(|d| d.as_millis() as u64),
        control_ms: control.map(|d| d.as_millis() as u64),
    }
}

impl SelfHealth {
    pub fn token(&self) -> &str {
        &self.token
    }

    fn beat(&self, slot: &AtomicU64) {
        slot.store(
            self.epoch.elapsed().as_millis() as u64 + 1,
            Ordering::Relaxed,
        );
    }

    fn age(&self, slot: &AtomicU64) -> Option<Duration> {
        match slot.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    pub fn proxy_answered(&self) {
        self.beat(&self.proxy);
    }

    pub fn control_alive(&self) {
        self.beat(&self.control);
    }

    pub fn verdict(&self) -> Verdict {
        judge(self.age(&self.proxy), self.age(&self.control), STALE)
    }
}

/// One self-check: a request to the proxy at `addr` that it must answer
/// 204 itself within a second.
pub async fn check_once(addr: SocketAddr, token: &str) -> Result<(), String> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!(
            "GET {PATH} HTTP/1.1\r\nHost: twinport-self-check\r\n{HEADER}: {token}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = [0u8; 32];
        let mut got = 0;
        while got < 12 {
            match s.read(&mut buf[got..]).await {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        let head = String::from_utf8_lossy(&buf[..got]).to_string();
        if head.starts_with("HTTP/1.1 204") {
            Ok(())
        } else {
            Err(format!("answered {head:?}"))
        }
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .map_err(|_| "no answer within 1 s".to_string())?
}

/// Checks the proxy at `addr` every [`EVERY`] until `shutdown` turns true.
/// Once this process hands its listeners over (binary upgrade) or stops,
/// the listener answers for the new process, if anyone: the proxy then
/// counts as answering while what it took in finishes.
pub async fn run(
    shared: std::sync::Arc<crate::controller::Shared>,
    addr: SocketAddr,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let health = &shared.self_health;
    let (mut failing, mut answered_once) = (false, false);
    loop {
        let leaving = shared.leaving.load(Ordering::Relaxed);
        let result = if leaving {
            Ok(())
        } else {
            check_once(addr, health.token()).await
        };
        match result {
            Ok(()) => {
                if failing && answered_once {
                    tracing::info!(%addr, "the proxy answers its self-check again");
                }
                (failing, answered_once) = (false, true);
                health.proxy_answered();
            }
            Err(why) => {
                // Before the first answer the listener may not be open yet.
                if !failing && answered_once {
                    tracing::warn!(%addr, %why, "the proxy did not answer its self-check");
                }
                failing = true;
            }
        }
        let pause = if failing { RETRY } else { EVERY };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
            }
        }
    }
}

/// systemd's watchdog, pinged only while [`SelfHealth::verdict`] is
/// healthy; returns at once when no watchdog is asked for.
pub async fn watchdog(health: std::sync::Arc<SelfHealth>) {
    let Some(every) = twinport_ops::systemd::watchdog_interval() else {
        return;
    };
    tracing::info!(interval = ?every, "systemd watchdog enabled: pinged while the proxy and the control loop answer");
    let mut tick = tokio::time::interval(every);
    let mut withheld = false;
    loop {
        tick.tick().await;
        let v = health.verdict();
        if v.healthy {
            twinport_ops::systemd::watchdog_ping();
            withheld = false;
        } else if !withheld {
            tracing::warn!(
                ?v,
                "not pinging the systemd watchdog: the gateway is not healthy"
            );
            withheld = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_beats_must_be_fresh() {
        let s = Duration::from_secs(3);
        let ms = Duration::from_millis;
        assert!(judge(Some(ms(100)), Some(ms(900)), s).healthy);
        assert!(!judge(None, Some(ms(10)), s).healthy, "no self-check yet");
        assert!(
            !judge(Some(ms(3_000)), Some(ms(10)), s).healthy,
            "proxy stale"
        );
        assert!(
            !judge(Some(ms(10)), Some(ms(5_000)), s).healthy,
            "control stale"
        );
        assert_eq!(judge(Some(ms(7)), None, s).proxy_ms, Some(7));
    }

    /// A listener that takes the connection but never answers (a hung
    /// proxy) fails the check within its second; one that answers 204
    /// passes; anything else fails.
    #[tokio::test]
    async fn the_check_wants_a_204_within_a_second() {
        use tokio::net::TcpListener;
        let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = hung.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = hung.accept().await {
                held.push(s);
            }
        });
        let t = Instant::now();
        let err = check_once(addr, "t").await.unwrap_err();
        assert!(err.contains("no answer"), "{err}");
        assert!(t.elapsed() < Duration::from_millis(1500));

        for (answer, ok) in [
            ("HTTP/1.1 204 No Content\r\n\r\n", true),
            ("HTTP/1.1 404 Not Found\r\n\r\n", false),
        ] {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(
                    req.starts_with("GET /.twinport/self-check HTTP/1.1"),
                    "{req}"
                );
                assert!(req.contains("x-twinport-self-check: tok"), "{req}");
                s.write_all(answer.as_bytes()).await.unwrap();
            });
            assert_eq!(check_once(addr, "tok").await.is_ok(), ok, "{answer}");
        }
    }

    #[test]
    fn beats_age() {
        let h = SelfHealth::default();
        assert_eq!(h.verdict().proxy_ms, None);
        h.proxy_answered();
        h.control_alive();
        let v = h.verdict();
        assert!(v.healthy, "{v:?}");
        assert!(v.proxy_ms.unwrap() < 1000);
        assert_eq!(h.token().len(), 32);
    }
}
