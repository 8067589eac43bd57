//! The binaries' systemd integration, without systemd: each daemon is
//! started with `NOTIFY_SOCKET` pointing at a datagram socket of this test
//! and `WATCHDOG_USEC` set, as systemd would for a `Type=notify` unit with
//! `WatchdogSec=`. It must say `READY=1` (with `MAINPID=`) only once it
//! serves, keep the watchdog fed, report `RELOADING=1` then `READY=1`
//! around a SIGHUP reload, and `STOPPING=1` on SIGTERM before it exits 0.
//! The units the roles install are checked by `systemd-analyze verify` in
//! playbooks.rs.

use devtools::harness::agent as agents;
use devtools::harness::ticketing as tk;

use agents::gw;

use devtools::{free_addr, TempDir};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// systemd's end of the notification socket.
struct Notify {
    sock: UnixDatagram,
    path: std::path::PathBuf,
    seen: Vec<String>,
}

impl Notify {
    fn new(dir: &TempDir) -> Notify {
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Notify {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// The environment systemd gives a `Type=notify` service with a
    /// 600 ms watchdog.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("NOTIFY_SOCKET".into(), self.path.display().to_string()),
            ("WATCHDOG_USEC".into(), "600000".into()),
        ]
    }

    /// Waits for a message holding the line `want`; returns that message.
    fn wait_for(&mut self, want: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == want) {
                    return msg;
                }
            }
        }
        panic!("no {want} within {timeout:?}; received: {:?}", self.seen);
    }

    /// How many messages so far held the line `want`.
    fn count(&self, want: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l == want))
            .count()
    }
}

fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// The common part: READY with MAINPID while `addr` accepts, the watchdog
/// fed, RELOADING then READY on SIGHUP, STOPPING on SIGTERM.
fn lifecycle(
    notify: &mut Notify,
    proc: &mut devtools::Proc,
    addr: SocketAddr,
    before_reload: impl FnOnce(),
    after_reload: impl FnOnce(),
) {
    let ready = notify.wait_for("READY=1", Duration::from_secs(20));
    assert!(
        accepts(addr),
        "READY=1 came before {addr} accepted connections"
    );
    assert!(
        ready.contains(&format!("MAINPID={}", proc.pid())),
        "READY=1 without this process's MAINPID: {ready:?}"
    );
    // 600 ms watchdog: fed every 300 ms.
    let before = notify.count("WATCHDOG=1");
    notify.wait_for("WATCHDOG=1", Duration::from_secs(2));
    notify.wait_for("WATCHDOG=1", Duration::from_secs(2));
    assert!(notify.count("WATCHDOG=1") >= before + 2);

    before_reload();
    proc.signal("HUP");
    let reloading = notify.wait_for("RELOADING=1", Duration::from_secs(5));
    assert!(
        reloading.contains("MONOTONIC_USEC="),
        "RELOADING=1 without MONOTONIC_USEC: {reloading:?}"
    );
    notify.wait_for("READY=1", Duration::from_secs(5));
    after_reload();
    assert!(accepts(addr), "still serving after the reload");

    proc.signal("TERM");
    notify.wait_for("STOPPING=1", Duration::from_secs(10));
    assert_eq!(
        proc.wait_exit(Duration::from_secs(15)),
        Some(0),
        "a clean exit after SIGTERM"
    );
}

#[test]
fn ticketing_notifies_readiness_watchdog_reload_and_stop_and_rereads_tokens_on_sighup() {
    let dir = TempDir::new("sd-ticketing");
    let mut notify = Notify::new(&dir);
    let mut t = tk::Ticketing::start_with_env(&dir, "a", None, &notify.env());
    let url = t.url("/api/v1/branches/centrum/tickets");
    let kiosk = |token: &str, key: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-H", &format!("Idempotency-Key: {key}")])
            .args(["-H", "Content-Type: application/json"])
            .args(["-d", r#"{"service":"A"}"#, &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let addr = t.addr;
    let new_token = "kiosk-token-rotated-0123456789";
    let token_file = dir.path().join("kiosk.token");
    let mut proc = std::mem::replace(
        &mut t.proc,
        devtools::Proc::spawn("true", std::process::Command::new("true"), None),
    );
    lifecycle(
        &mut notify,
        &mut proc,
        addr,
        || {
            // The token is rotated in its file: not in force before SIGHUP.
            assert_eq!(kiosk(tk::KIOSK, "sd-1"), "201");
            devtools::write_secret(&token_file, new_token);
            assert_eq!(kiosk(new_token, "sd-2"), "401");
        },
        || {
            assert_eq!(
                kiosk(new_token, "sd-3"),
                "201",
                "the new token works after SIGHUP"
            );
            assert_eq!(
                kiosk(tk::KIOSK, "sd-4"),
                "401",
                "the old token no longer works"
            );
        },
    );
    assert!(
        std::fs::read_to_string(&t.log)
            .unwrap()
            .contains("token files re-read"),
        "the reload is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agent_notifies_readiness_watchdog_reload_and_stop() {
    let dir = TempDir::new("sd-agent");
    let mut notify = Notify::new(&dir);
    let (app, ready) = (free_addr(), free_addr());
    // No gateway here: the agent only needs its token file to start.
    devtools::write_secret(&dir.path().join("admin.token"), agents::GATEWAY_TOKEN);
    let mut twin = agents::Twin::start_with_env(
        &dir,
        "a",
        (app, ready),
        free_addr(),
        agents::UPGRADE,
        &notify.env(),
    );
    let control = twin.control;
    let mut proc = std::mem::replace(
        &mut twin.proc,
        devtools::Proc::spawn("true", std::process::Command::new("true"), None),
    );
    tokio::task::spawn_blocking(move || {
        lifecycle(&mut notify, &mut proc, control, || {}, || {});
    })
    .await
    .unwrap();
    assert!(
        twin.log_text().contains("token files re-read"),
        "{}",
        twin.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_notifies_readiness_watchdog_reload_and_stop() {
    let dir = TempDir::new("sd-gateway");
    let mut notify = Notify::new(&dir);
    let (a, b) = (free_addr(), free_addr());
    let opts = gw::GwOpts {
        https: true,
        env: notify.env(),
        ..gw::GwOpts::default()
    };
    let targets = [("a", a), ("b", b)]
        .map(|(n, addr)| (n.to_string(), addr.to_string(), free_addr().to_string()));
    let mut g = gw::Gateway::start_with(&dir, targets, &opts, "");
    let http = g.http;
    let https = g.https.unwrap();
    let mut proc = std::mem::replace(
        &mut g.proc,
        devtools::Proc::spawn("true", std::process::Command::new("true"), None),
    );
    let log = g.log.clone();
    tokio::task::spawn_blocking(move || {
        lifecycle(
            &mut notify,
            &mut proc,
            http,
            || {},
            || assert!(accepts(https)),
        );
    })
    .await
    .unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("SIGHUP"), "the reload is logged:\n{log}");
}
