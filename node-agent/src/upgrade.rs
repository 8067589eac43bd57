//! The upgrade of the node to another release, with automatic rollback.
//!
//! ```text
//! install ─▶ drain ─▶ (gateway: not routed, 0 in flight) ─▶ stop ─▶ switch ─▶ start ─▶ verify ─▶ smoke ─▶ ready
//!    │          │ timeout                                      │ any step fails from here on
//!    ▼          ▼                                              ▼
//!  aborted   undrain, aborted                  rollback: stop ─▶ switch back ─▶ start ─▶ verify
//!  (node stays in service)                      rolled_back (or rollback_failed: node unhealthy)
//! ```
//!
//! Every step is recorded in the upgrade record (`GET /v1/upgrade`, the
//! status) and in the audit log. Before anything changes, [`check`] refuses
//! a request that cannot work (a missing path, a bad version, the version
//! already running, another upgrade running) with nothing changed.

use crate::agent::Agent;
use crate::gateway;
pub use crate::record::{Step, UpgradeRecord};
use crate::release::ReleaseError;
use crate::state::{Event, State};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use twinport_ops::timestamp;

/// Why an upgrade request is refused before anything changes.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Release(#[from] ReleaseError),
    #[error("an upgrade is already running")]
    Busy,
    #[error("the node is {0}; an upgrade needs it ready, unhealthy, draining or in maintenance")]
    State(State),
}

/// The checks made before an upgrade starts.
pub fn check(agent: &Agent, release: &std::path::Path, version: &str) -> Result<(), Refusal> {
    agent.store.check_source(release, version)?;
    match agent.state() {
        s @ (State::Starting | State::Upgrading) => Err(Refusal::State(s)),
        _ => Ok(()),
    }
}

/// Records the upgrade as running (before the request is answered, so a
/// client polling `GET /v1/upgrade` at once sees this one).
pub fn begin(agent: &Agent, release: &std::path::Path, version: &str) {
    agent.set_upgrade(Some(UpgradeRecord {
        from: agent.version(),
        to: version.to_string(),
        release: release.display().to_string(),
        started: timestamp(SystemTime::now()),
        finished: None,
        result: "running",
        error: None,
        steps: Vec::new(),
    }));
    agent.metrics.upgrade_in_progress.set(1);
}

/// Runs an upgrade to `version` from `release` after [`begin`]; the
/// caller holds the upgrade lock (`guard`) and has run [`check`].
pub async fn run(
    agent: Arc<Agent>,
    release: PathBuf,
    version: String,
    guard: tokio::sync::OwnedMutexGuard<()>,
) {
    let from = agent.version();
    tracing::info!(%from, to = %version, release = %release.display(), "upgrade starts");
    let u = Upgrade {
        agent: agent.clone(),
        to: version.clone(),
    };
    let (result, error) = u.execute(&from, &release).await;
    agent.update_upgrade(|r| {
        r.result = result;
        r.error = error.clone();
        r.finished = Some(timestamp(SystemTime::now()));
    });
    agent.metrics.upgrades.with_label_values(&[result]).inc();
    agent.metrics.upgrade_in_progress.set(0);
    agent.audit.record(
        "upgrade",
        &format!("upgrade {from} → {version}"),
        result,
        if result == "succeeded" { 200 } else { 500 },
    );
    match &error {
        None => tracing::info!(%from, to = %version, "upgrade succeeded"),
        Some(e) => tracing::error!(%from, to = %version, %result, error = %e, "upgrade failed"),
    }
    drop(guard);
}

struct Upgrade {
    agent: Arc<Agent>,
    to: String,
}

impl Upgrade {
    /// Records a step's outcome (record, log and audit).
    fn step(&self, step: &'static str, r: &Result<String, String>) {
        let (result, detail) = match r {
            Ok(d) => ("ok", d.clone()),
            Err(e) => ("failed", e.clone()),
        };
        tracing::info!(step, result, %detail, "upgrade step");
        self.agent.audit.record(
            "upgrade",
            &format!("upgrade to {}: {step}", self.to),
            result,
            if r.is_ok() { 200 } else { 500 },
        );
        self.agent.update_upgrade(|u| {
            u.steps.push(Step {
                step,
                at: timestamp(SystemTime::now()),
                result,
                detail,
            })
        });
    }

    async fn execute(
        &self,
        from: &str,
        release: &std::path::Path,
    ) -> (&'static str, Option<String>) {
        let agent = &self.agent;
        // 1. Copy the release beside the others: the node still serves.
        let store = agent.store.clone();
        let (src, to) = (release.to_path_buf(), self.to.clone());
        let installed = tokio::task::spawn_blocking(move || store.install(&src, &to))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map(|p| format!("installed in {}", p.display()));
        self.step("install", &installed);
        if let Err(e) = installed {
            return ("aborted", Some(e));
        }

        // 2. Drain, and wait until the gateway sends nothing more.
        let drained_by_us = matches!(agent.state(), State::Ready | State::Unhealthy);
        if drained_by_us {
            if let Err(e) = agent.apply(Event::Drain, &format!("upgrade to {}", self.to)) {
                let e = e.to_string();
                self.step("drain", &Err(e.clone()));
                return ("aborted", Some(e));
            }
        }
        let drained = self.wait_drained().await;
        self.step("drain", &drained);
        if let Err(e) = drained {
            if drained_by_us {
                let _ = agent.apply(Event::Undrain, "upgrade aborted: the drain did not finish");
            }
            return ("aborted", Some(e));
        }

        // 3-7. From here a failure rolls back.
        if let Err(e) = agent.apply(
            Event::UpgradeBegin,
            &format!("upgrading {from} → {}", self.to),
        ) {
            return ("aborted", Some(e.to_string()));
        }
        match self.replace(from, &self.to, true).await {
            Ok(()) => {
                agent.set_version(&self.to);
                let _ = agent.apply(Event::UpgradeEnd, &format!("upgraded to {}", self.to));
                let store = agent.store.clone();
                let keep = agent.config.upgrade.keep_releases as usize;
                let from_owned = from.to_string();
                let removed =
                    tokio::task::spawn_blocking(move || store.prune(keep, Some(&from_owned)))
                        .await
                        .unwrap_or_default();
                self.step(
                    "ready",
                    &Ok(if removed.is_empty() {
                        format!("running {}", self.to)
                    } else {
                        format!(
                            "running {}; removed old releases {}",
                            self.to,
                            removed.join(", ")
                        )
                    }),
                );
                ("succeeded", None)
            }
            Err(e) => {
                let back = self.replace(&self.to, from, false).await;
                agent.set_version(from);
                let result = if back.is_ok() {
                    "rolled_back"
                } else {
                    "rollback_failed"
                };
                let _ = agent.apply(
                    Event::UpgradeEnd,
                    &format!("upgrade to {} failed ({e}); {result} to {from}", self.to),
                );
                self.step("rollback", &back.map(|_| format!("running {from} again")));
                (result, Some(e))
            }
        }
    }

    /// Stops the app, switches `current` to `to`, starts it and waits for
    /// its probes (and, going forward, the smoke test).
    async fn replace(&self, from: &str, to: &str, forward: bool) -> Result<(), String> {
        let agent = &self.agent;
        let name = |s: &'static str, b: &'static str| if forward { s } else { b };
        agent.supervisor.stop().await;
        self.step(
            name("stop", "rollback: stop"),
            &Ok(format!("{from} stopped")),
        );
        let switched = agent
            .store
            .switch(to)
            .map(|_| format!("current → {to}"))
            .map_err(|e| e.to_string());
        self.step(name("switch", "rollback: switch"), &switched);
        switched?;
        agent.reset_probes();
        let started = agent
            .supervisor
            .start(agent.release(to))
            .await
            .map(|_| format!("{to} started"));
        self.step(name("start", "rollback: start"), &started);
        started?;
        let verified = agent
            .wait_passing(agent.config.upgrade.start_timeout)
            .await
            .map(|_| format!("every probe passes on {to}"));
        self.step(name("verify", "rollback: verify"), &verified);
        verified?;
        if forward {
            if let Some(smoke) = &agent.config.upgrade.smoke {
                let r = smoke_test(smoke, to, agent.config.upgrade.smoke_timeout).await;
                self.step("smoke", &r);
                r?;
            }
        }
        Ok(())
    }

    /// Waits until the gateway routes nothing new to this node and has no
    /// request in flight on it; without a gateway link, `drain_settle`.
    async fn wait_drained(&self) -> Result<String, String> {
        let agent = &self.agent;
        let u = &agent.config.upgrade;
        let Some(link) = &agent.config.gateway else {
            tokio::time::sleep(u.drain_settle).await;
            return Ok(format!(
                "waited {} (no gateway link to ask)",
                humantime::format_duration(u.drain_settle)
            ));
        };
        let end = tokio::time::Instant::now() + u.drain_timeout;
        loop {
            let token = agent
                .tokens
                .load()
                .gateway
                .clone()
                .unwrap_or_else(|| link.token.clone());
            let last = match gateway::node_traffic(link, &token, &agent.config.node).await {
                Ok(t) if !t.routed && t.inflight == 0 => {
                    return Ok(
                        "the gateway routes nothing to the node and has 0 requests in flight"
                            .into(),
                    )
                }
                Ok(t) => format!("routed: {}, {} requests in flight", t.routed, t.inflight),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= end {
                return Err(format!(
                    "the drain did not finish within {}: {last}",
                    humantime::format_duration(u.drain_timeout)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the smoke command with `TWINPORT_VERSION` set; exit 0 passes.
async fn smoke_test(argv: &[String], version: &str, timeout: Duration) -> Result<String, String> {
    let run = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("TWINPORT_VERSION", version)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Err(format!(
            "the smoke test did not finish within {}",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Err(format!("cannot run the smoke test {}: {e}", argv[0])),
        Ok(Ok(out)) if out.status.success() => Ok("the smoke test passed".into()),
        Ok(Ok(out)) => Err(format!(
            "the smoke test failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}
