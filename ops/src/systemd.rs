//! systemd's service notifications (`sd_notify(3)`), through the
//! `sd-notify` crate: readiness once the daemon serves, `RELOADING=1` and
//! `READY=1` around a reload, `STOPPING=1` when it leaves, and the
//! watchdog keep-alive. A daemon not started by systemd (no
//! `NOTIFY_SOCKET`) sends nothing; a failed send is logged, never fatal.
//!
//! Units use `Type=notify` and `WatchdogSec=`; with systemd 252 there is no
//! `Type=notify-reload`, so `ExecReload=` sends SIGHUP and the daemon
//! reports the reload itself with [`reloading`] and [`ready`].

use sd_notify::NotifyState;
use std::time::Duration;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// The daemon serves: `READY=1`, with `MAINPID=` so that a process that
/// replaced another (the gateway's binary upgrade) is the one supervised.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::MainPid(std::process::id())]);
}

/// A reload starts: `RELOADING=1` with the monotonic time systemd wants.
/// Follow it with [`ready`] when the reload is done, good or not.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The daemon is leaving: `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// A one-line status for `systemctl status`.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// How often to send the watchdog keep-alive: half the `WatchdogSec=`
/// systemd asked for (`WATCHDOG_USEC`), or `None` when it asked for none.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}

/// One `WATCHDOG=1`, for a daemon that pings only while it is healthy.
pub fn watchdog_ping() {
    send(&[NotifyState::Watchdog]);
}

/// Sends `WATCHDOG=1` every [`watchdog_interval`], forever; returns at
/// once when no watchdog is asked for. Run it on the runtime whose health
/// it vouches for: if that runtime hangs, the pings stop and systemd
/// restarts the service.
pub async fn watchdog() {
    let Some(every) = watchdog_interval() else {
        return;
    };
    tracing::info!(interval = ?every, "systemd watchdog enabled");
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}
