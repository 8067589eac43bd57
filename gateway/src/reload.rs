//! Configuration reload: from the API, SIGHUP or a change of the file.
//!
//! The file is read and validated off the control loop; only a valid
//! configuration is handed to the controller, which swaps it in atomically.
//! An invalid file changes nothing, is counted in
//! `twinport_config_reloads_total{result="failed"}`, and its errors are
//! returned (API) and logged (SIGHUP, file watch). Settings that need new
//! sockets or a new process (listener addresses, `server.*`) are reported as
//! needing a binary upgrade; everything else takes effect at once.

use crate::config::{self, ConfigError, GatewayConfig};
use crate::controller::{ControlError, Shared};
use crate::metrics::metrics;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::{info, warn};

#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    /// Changes that are not in force until the gateway binary is upgraded
    /// or restarted, one sentence each.
    pub needs_upgrade: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Control(#[from] ControlError),
}

pub struct Reloader {
    shared: Arc<Shared>,
    /// The configuration the process started with: its listeners and
    /// server settings are the ones actually in force.
    started: Arc<GatewayConfig>,
    /// One reload at a time; holds the content of the last file seen.
    last_seen: Mutex<Option<Vec<u8>>>,
}

impl Reloader {
    pub fn new(shared: Arc<Shared>, started: Arc<GatewayConfig>) -> Self {
        let initial = std::fs::read(&shared.config_path).ok();
        Reloader {
            shared,
            started,
            last_seen: Mutex::new(initial),
        }
    }

    /// Reads, validates and applies the configuration file.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadReport, ReloadError> {
        let mut last_seen = self.last_seen.lock().await;
        let path = self.shared.config_path.clone();
        let read = tokio::task::spawn_blocking(move || config::load_with_bytes(&path))
            .await
            .map_err(|_| ControlError::Stopped)?;
        *last_seen = read.0;
        let new = match read.1 {
            Ok(c) => c,
            Err(e) => {
                metrics()
                    .config_reloads
                    .with_label_values(&["failed"])
                    .inc();
                warn!(%trigger, error = %e, "configuration refused; the running one stays in force");
                return Err(e.into());
            }
        };
        let needs_upgrade = self.needs_upgrade(&new);
        let generation = self.shared.apply_config(Arc::new(new)).await?;
        metrics().config_reloads.with_label_values(&["ok"]).inc();
        for n in &needs_upgrade {
            warn!(%trigger, change = %n, "configuration change needs a binary upgrade to take effect");
        }
        info!(%trigger, generation, "configuration reloaded");
        Ok(ReloadReport {
            generation,
            needs_upgrade,
        })
    }

    fn needs_upgrade(&self, new: &GatewayConfig) -> Vec<String> {
        let mut out = Vec::new();
        let show =
            |a: Option<std::net::SocketAddr>| a.map_or("none".to_string(), |a| a.to_string());
        for ((field, old), (_, new)) in self
            .started
            .listeners
            .addresses()
            .into_iter()
            .zip(new.listeners.addresses())
        {
            if old != new {
                out.push(format!(
                    "{field}: {} → {} needs a binary upgrade (the listening socket stays {})",
                    show(old),
                    show(new),
                    show(old)
                ));
            }
        }
        // The HTTPS listener's settings that pingora takes at start only.
        let (was, now) = (
            self.started.listeners.https.as_ref(),
            new.listeners.https.as_ref(),
        );
        for (changed, what) in [
            (
                differs(was, now, |h| h.http2),
                "listeners.https.http2 needs a binary upgrade",
            ),
            (
                differs(was, now, |h| h.http2_window),
                "listeners.https.http2_window_bytes needs a binary upgrade",
            ),
            (
                differs(was, now, |h| h.resumption),
                "listeners.https.session_cache and session_tickets need a binary upgrade",
            ),
        ] {
            if changed {
                out.push(what.into());
            }
        }
        if self.started.server != new.server {
            out.push("server settings (threads, grace periods, pid file, upgrade socket) need a binary upgrade".into());
        }
        out
    }

    /// Reloads whenever the file's content changes (checked every second,
    /// which also catches editors that replace the file and symlink swaps).
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if !self.shared.snapshot.load().config.watch_config {
                continue;
            }
            let path = self.shared.config_path.clone();
            let Ok(Ok(now)) = tokio::task::spawn_blocking(move || std::fs::read(path)).await else {
                continue;
            };
            let changed = self.last_seen.lock().await.as_deref() != Some(&now[..]);
            if changed {
                // Errors are logged and counted inside; the file is not
                // retried until it changes again.
                let _ = self.reload("file change").await;
            }
        }
    }

    /// Reloads on every SIGHUP.
    pub async fn on_sighup(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            warn!("cannot install the SIGHUP handler");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    twinport_ops::systemd::reloading();
                    let _ = self.reload("SIGHUP").await;
                    twinport_ops::systemd::ready();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Whether a setting of an optional section (the HTTPS listener) differs
/// between two configs; a section there in one and not the other does.
fn differs<S, T: PartialEq>(a: Option<&S>, b: Option<&S>, setting: impl Fn(&S) -> T) -> bool {
    a.map(&setting) != b.map(&setting)
}

#[cfg(test)]
mod tests {
    use super::differs;

    #[test]
    fn a_setting_differs_when_it_changes_or_its_section_comes_or_goes() {
        let (a, b) = ((1, true), (1, false));
        assert!(!differs(Some(&a), Some(&b), |s| s.0));
        assert!(differs(Some(&a), Some(&b), |s| s.1));
        assert!(differs(Some(&a), None, |s| s.0));
        assert!(differs(None, Some(&b), |s| s.0));
        assert!(!differs(None::<&(i32, bool)>, None, |s| s.0));
    }
}
