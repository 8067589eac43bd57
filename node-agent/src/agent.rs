//! The agent's shared core: the state machine behind a short lock, the
//! probe trackers, the recent transitions, the upgrade record, and the
//! `/ready` answer precomputed after every change so that the gateway's
//! check is answered from memory and never waits on a probe.

use crate::config::AgentConfig;
use crate::metrics::Metrics;
use crate::probe::{self, ProbeStatus, Tracker};
use crate::record::UpgradeRecord;
use crate::release::Store;
use crate::state::{Event, Health, Machine, Refused, State, Transition};
use crate::supervisor::{Release, Supervisor};
use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use twinport_ops::audit::AuditLog;
use twinport_ops::timestamp;

/// How many transitions the status keeps.
const RECENT: usize = 32;

/// The answer `/ready` gives until the next change.
#[derive(Debug, Clone)]
pub struct ReadyAnswer {
    pub status: u16,
    pub body: Arc<str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransitionRecord {
    pub at: String,
    pub from: &'static str,
    pub to: &'static str,
    pub reason: String,
}

struct Inner {
    machine: Machine,
    trackers: Vec<Tracker>,
    /// Raised by [`Agent::reset_probes`]: results of checks begun before
    /// are dropped.
    generation: u64,
    transitions: VecDeque<TransitionRecord>,
    upgrade: Option<UpgradeRecord>,
    version: String,
}

pub struct Agent {
    pub config: AgentConfig,
    /// The control API's token and the gateway's: from the config at
    /// start, re-read from their files on SIGHUP ([`Agent::reload_tokens`]).
    pub tokens: ArcSwap<Tokens>,
    pub metrics: Metrics,
    pub supervisor: Supervisor,
    pub store: Store,
    pub audit: AuditLog,
    inner: Mutex<Inner>,
    ready: ArcSwap<ReadyAnswer>,
    health: watch::Sender<Health>,
    /// Raised with every probe reset, to run each probe at once.
    probes_reset: watch::Sender<u64>,
    /// Taken by the one upgrade that may run at a time.
    pub upgrade_lock: Arc<tokio::sync::Mutex<()>>,
}

/// The secrets the agent holds, re-read on SIGHUP.
pub struct Tokens {
    pub control: std::sync::Arc<[u8]>,
    pub read: Option<std::sync::Arc<[u8]>>,
    pub gateway: Option<std::sync::Arc<[u8]>>,
}

impl Tokens {
    fn of(config: &AgentConfig) -> Tokens {
        Tokens {
            control: config.control.token.clone(),
            read: config.control.read_token.clone(),
            gateway: config.gateway.as_ref().map(|g| g.token.clone()),
        }
    }
}

impl Agent {
    /// Re-reads the token files named by the config file at `path`. The
    /// file is validated whole first; if it is invalid nothing changes.
    /// Other settings are not applied: the answer says whether any differ
    /// from those running (they take effect at the next restart).
    pub fn reload_tokens(
        &self,
        path: &std::path::Path,
    ) -> Result<bool, twinport_ops::config::ConfigError> {
        let new = crate::config::load(path)?;
        // Debug output leaves token contents out (redacted).
        let other_changes = format!("{:?}", new) != format!("{:?}", self.config);
        let mut tokens = Tokens::of(&new);
        if self.config.gateway.is_none() {
            tokens.gateway = None;
        }
        self.tokens.store(std::sync::Arc::new(tokens));
        Ok(other_changes)
    }

    /// Builds the agent for the release `current` points at (the app is
    /// started by [`Agent::start`]).
    pub fn new(config: AgentConfig, version: String, audit: AuditLog) -> Arc<Agent> {
        let metrics = Metrics::new(&config.node);
        metrics.set_release(&version);
        let supervisor = Supervisor::spawn(
            config.app.clone(),
            config.node.clone(),
            config.state_dir.clone(),
        );
        let trackers = config
            .probes
            .iter()
            .map(|p| Tracker::new(p.rise, p.fall))
            .collect();
        let agent = Arc::new(Agent {
            tokens: ArcSwap::from_pointee(Tokens::of(&config)),
            store: Store::new(&config.state_dir),
            metrics,
            supervisor,
            audit,
            inner: Mutex::new(Inner {
                machine: Machine::default(),
                trackers,
                generation: 0,
                transitions: VecDeque::new(),
                upgrade: None,
                version,
            }),
            ready: ArcSwap::from_pointee(ReadyAnswer {
                status: 503,
                body: Arc::from("{}"),
            }),
            health: watch::channel(Health::Unknown).0,
            probes_reset: watch::channel(0).0,
            upgrade_lock: Arc::new(tokio::sync::Mutex::new(())),
            config,
        });
        agent.refresh(&agent.lock());
        agent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the app on the current release and one task per probe.
    pub async fn start(self: &Arc<Self>) -> Result<(), String> {
        let version = self.version();
        self.supervisor.start(self.release(&version)).await?;
        for i in 0..self.config.probes.len() {
            tokio::spawn(probe_loop(self.clone(), i));
        }
        tokio::spawn(app_metrics(self.clone()));
        Ok(())
    }

    pub fn release(&self, version: &str) -> Release {
        Release {
            dir: self.store.path_of(version),
            version: version.to_string(),
        }
    }

    pub fn version(&self) -> String {
        self.lock().version.clone()
    }

    pub fn set_version(&self, version: &str) {
        let mut inner = self.lock();
        inner.version = version.to_string();
        self.metrics.set_release(version);
        self.refresh(&inner);
    }

    pub fn state(&self) -> State {
        self.lock().machine.state()
    }

    /// The answer for `/ready`.
    pub fn ready(&self) -> Arc<ReadyAnswer> {
        self.ready.load_full()
    }

    /// Applies an event to the state machine; a transition is logged,
    /// counted and kept for the status.
    pub fn apply(&self, event: Event, reason: &str) -> Result<Option<Transition>, Refused> {
        let mut inner = self.lock();
        let t = inner.machine.apply(event, reason)?;
        if let Some(t) = &t {
            self.note(&mut inner, t);
        }
        Ok(t)
    }

    fn note(&self, inner: &mut Inner, t: &Transition) {
        tracing::info!(from = %t.from, to = %t.to, reason = %t.reason, "node state changed");
        self.metrics
            .transitions
            .with_label_values(&[t.from.as_str(), t.to.as_str()])
            .inc();
        self.metrics.set_state(t.to);
        inner.transitions.push_front(TransitionRecord {
            at: timestamp(SystemTime::now()),
            from: t.from.as_str(),
            to: t.to.as_str(),
            reason: t.reason.clone(),
        });
        inner.transitions.truncate(RECENT);
        self.refresh(inner);
    }

    /// Rebuilds the `/ready` answer from the state.
    fn refresh(&self, inner: &Inner) {
        let state = inner.machine.state();
        let (status, body) = if state == State::Ready {
            (
                200,
                json!({"node": self.config.node, "state": "ready", "weight": self.config.weight, "version": inner.version}),
            )
        } else {
            (
                503,
                json!({"node": self.config.node, "state": state.as_str(), "reason": inner.machine.reason(), "version": inner.version}),
            )
        };
        self.ready.store(Arc::new(ReadyAnswer {
            status,
            body: Arc::from(body.to_string()),
        }));
    }

    /// One probe result, from the probe's task.
    fn record_probe(&self, index: usize, generation: u64, ok: bool, detail: String) {
        let name = &self.config.probes[index].name;
        self.metrics
            .probe_checks
            .with_label_values(&[name.as_str(), if ok { "ok" } else { "failed" }])
            .inc();
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let tracker = &mut inner.trackers[index];
        if !tracker.record(ok, detail) {
            return;
        }
        let status = tracker.status;
        let detail = tracker.detail.clone();
        tracing::info!(probe = %name, status = status.as_str(), %detail, "probe changed");
        self.metrics
            .probe_up
            .with_label_values(&[name])
            .set(i64::from(status == ProbeStatus::Passing));
        let health = probe::aggregate(&inner.trackers);
        if health == inner.machine.health() {
            return;
        }
        let reason = match health {
            Health::Passing => format!("all {} probes pass", inner.trackers.len()),
            _ => self.failing_reason(&inner),
        };
        self.set_health(&mut inner, health, &reason);
    }

    fn failing_reason(&self, inner: &Inner) -> String {
        let failing: Vec<String> = inner
            .trackers
            .iter()
            .zip(&self.config.probes)
            .filter(|(t, _)| t.status == ProbeStatus::Failing)
            .map(|(t, p)| format!("probe {} failed: {}", p.name, t.detail))
            .collect();
        if failing.is_empty() {
            "probes restarted".to_string()
        } else {
            failing.join("; ")
        }
    }

    fn set_health(&self, inner: &mut Inner, health: Health, reason: &str) {
        let t = inner
            .machine
            .apply(Event::Health(health), reason)
            .expect("health events are never refused");
        if let Some(t) = &t {
            self.note(inner, t);
        } else {
            self.refresh(inner);
        }
        self.health.send_replace(health);
    }

    /// Forgets every probe result (the app was just started anew); results
    /// of checks begun before are dropped.
    pub fn reset_probes(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        for (t, p) in inner.trackers.iter_mut().zip(&self.config.probes) {
            t.reset();
            self.metrics.probe_up.with_label_values(&[&p.name]).set(0);
        }
        self.set_health(&mut inner, Health::Unknown, "probes restarted");
        self.probes_reset.send_replace(inner.generation);
    }

    /// Waits until every probe passes; the last failing reason on timeout.
    pub async fn wait_passing(&self, timeout: Duration) -> Result<(), String> {
        let mut rx = self.health.subscribe();
        let passed = tokio::time::timeout(timeout, rx.wait_for(|h| *h == Health::Passing))
            .await
            .is_ok_and(|r| r.is_ok());
        match passed {
            true => Ok(()),
            _ => {
                let inner = self.lock();
                let why = self.failing_reason(&inner);
                let why = if why == "probes restarted" {
                    "the probes have not passed yet".to_string()
                } else {
                    why
                };
                Err(format!(
                    "not ready within {}: {why}",
                    humantime::format_duration(timeout)
                ))
            }
        }
    }

    pub fn set_upgrade(&self, record: Option<UpgradeRecord>) {
        self.lock().upgrade = record;
    }

    pub fn update_upgrade(&self, f: impl FnOnce(&mut UpgradeRecord)) {
        if let Some(u) = self.lock().upgrade.as_mut() {
            f(u)
        }
    }

    pub fn upgrade(&self) -> Option<UpgradeRecord> {
        self.lock().upgrade.clone()
    }

    /// What `GET /v1/status` shows.
    pub fn status(&self) -> Value {
        let app = self.supervisor.status().borrow().clone();
        let inner = self.lock();
        let probes: Vec<Value> = inner
            .trackers
            .iter()
            .zip(&self.config.probes)
            .map(|(t, p)| json!({"name": p.name, "status": t.status.as_str(), "detail": t.detail}))
            .collect();
        json!({
            "node": self.config.node,
            "state": inner.machine.state().as_str(),
            "reason": inner.machine.reason(),
            "health": match inner.machine.health() { Health::Passing => "passing", Health::Failing => "failing", Health::Unknown => "unknown" },
            "weight": self.config.weight,
            "version": inner.version,
            "releases": self.store.installed(),
            "app": app,
            "probes": probes,
            "transitions": inner.transitions,
            "upgrade": inner.upgrade,
        })
    }
}

/// Runs probe `index` on its interval for as long as the agent runs.
async fn probe_loop(agent: Arc<Agent>, index: usize) {
    let probe = agent.config.probes[index].clone();
    let http = probe::http_client();
    let mut tick = tokio::time::interval(probe.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reset = agent.probes_reset.subscribe();
    loop {
        // On its interval, or at once after a reset (a new release must
        // not wait a long interval, such as a disk probe's, to be checked).
        tokio::select! {
            _ = tick.tick() => {}
            _ = reset.changed() => tick.reset(),
        }
        let generation = agent.lock().generation;
        let (ok, detail) = match probe::run(&probe, &http).await {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        agent.record_probe(index, generation, ok, detail);
    }
}

/// Follows the supervisor's status into the metrics.
async fn app_metrics(agent: Arc<Agent>) {
    let mut rx = agent.supervisor.status();
    let mut restarts = 0;
    loop {
        let s = rx.borrow_and_update().clone();
        agent.metrics.app_up.set(i64::from(s.running));
        if s.restarts > restarts {
            agent.metrics.app_restarts.inc_by(s.restarts - restarts);
            restarts = s.restarts;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
