//! The control loop: the one owner of the failover state machine.
//!
//! ```text
//!   health checker (per node) ──┐
//!                               ├─ Event ─▶ Controller ─▶ ArcSwap<Snapshot> ─▶ proxy (every request)
//!   proxy (passive failures) ───┘            │
//!                                             └─▶ logs, metrics, cutting sessions to a dead node
//! ```
//!
//! Events arrive on an unbounded channel (sending never blocks a request),
//! are applied to [`Cluster`] with the current time, and every change is
//! logged at info with its reason, counted, and published as a new
//! routing snapshot.

use crate::config::GatewayConfig;
use crate::failover::{Cluster, Health, NodeId, Observation, Role, Rules, Transition};
use crate::health::{next_check_in, CheckOutcome, Checker};
use crate::metrics::metrics;
use crate::node::NodeRuntime;
use crate::routing::Snapshot;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

/// Something the controller must know about.
#[derive(Debug)]
pub enum Event {
    Check { node: NodeId, outcome: CheckOutcome },
    Passive { node: NodeId, reason: String },
}

/// What the request path shares with the control plane.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    events: mpsc::UnboundedSender<Event>,
}

impl Shared {
    /// Reports a failure seen on a real request; never blocks.
    pub fn passive_failure(&self, node: NodeId, reason: String) {
        // The receiver only goes away at shutdown; nothing to report then.
        let _ = self.events.send(Event::Passive { node, reason });
    }
}

/// Node states shown in `twinport_node_state`.
pub const NODE_STATES: [&str; 8] = [
    "unknown",
    "ready",
    "draining",
    "starting",
    "maintenance",
    "upgrading",
    "unhealthy",
    "down",
];

pub struct Controller {
    cluster: Cluster,
    config: Arc<GatewayConfig>,
    nodes: [Arc<NodeRuntime>; 2],
    shared: Arc<Shared>,
    agent_state: [Option<String>; 2],
}

impl Controller {
    pub fn new(config: Arc<GatewayConfig>) -> (Self, Arc<Shared>, mpsc::UnboundedReceiver<Event>) {
        let nodes = [0, 1].map(|i| Arc::new(NodeRuntime::new(i, &config.nodes[i], &config)));
        let cluster = Cluster::new(Rules::from_config(&config));
        let (tx, rx) = mpsc::unbounded_channel();
        let snapshot = Snapshot::new(config.clone(), nodes.clone(), Vec::new(), [0, 0]);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            events: tx,
        });
        metrics().config_generation.set(1);
        let c = Controller {
            cluster,
            config,
            nodes,
            shared: shared.clone(),
            agent_state: [None, None],
        };
        c.export();
        (c, shared, rx)
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Checks both nodes once, concurrently, and applies the results: run
    /// before the listeners open so that the first request already knows
    /// which node is healthy.
    pub async fn initial_checks(&mut self, checker: &Checker) {
        let hc = &self.config.health;
        let (a, b) = tokio::join!(
            checker.check(&self.config.nodes[0], hc),
            checker.check(&self.config.nodes[1], hc)
        );
        let now = Instant::now();
        self.apply(
            Event::Check {
                node: 0,
                outcome: a,
            },
            now,
        );
        self.apply(
            Event::Check {
                node: 1,
                outcome: b,
            },
            now,
        );
    }

    /// Applies one event at `now`.
    pub fn apply(&mut self, event: Event, now: Instant) {
        let (node, observation) = match event {
            Event::Check { node, outcome } => {
                let name = &self.config.nodes[node].name;
                metrics()
                    .health_checks
                    .with_label_values(&[name.as_str(), outcome.result])
                    .inc();
                if let Observation::CheckFailed { reason } = &outcome.observation {
                    if self.cluster.node(node).health == Health::Up {
                        warn!(node = %name, %reason, "readiness check failed");
                    }
                }
                self.agent_state[node] = outcome.agent_state;
                (node, outcome.observation)
            }
            Event::Passive { node, reason } => {
                if self.cluster.node(node).health != Health::Up {
                    // Already out; late reports of the same failure.
                    return;
                }
                (node, Observation::PassiveFailure { reason })
            }
        };
        let transitions = self.cluster.observe(node, observation, now);
        self.after(transitions);
    }

    /// Lets time pass (flap holds, failback hold-down).
    pub fn tick(&mut self, now: Instant) {
        let transitions = self.cluster.tick(now);
        self.after(transitions);
    }

    fn after(&mut self, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            // Weights or draining may still have changed.
            self.publish();
            self.export();
            return;
        }
        let name = |n: NodeId| self.config.nodes[n].name.clone();
        let mut newly_down = Vec::new();
        for t in &transitions {
            match t {
                Transition::Health {
                    node,
                    from,
                    to,
                    reason,
                } => {
                    info!(node = %name(*node), from = from.as_str(), to = to.as_str(), %reason, "node health changed");
                    if *from == Health::Up && *to == Health::Down {
                        newly_down.push(*node);
                    }
                }
                Transition::Damped { node, until } => {
                    let left = until.saturating_duration_since(Instant::now());
                    info!(node = %name(*node), hold = %humantime::format_duration(left), "node is flapping; held down");
                }
                Transition::Primary {
                    from,
                    to,
                    reason,
                    cause,
                    failover,
                } => {
                    let from = from.map(name).unwrap_or_else(|| "none".into());
                    let to = to.map(name).unwrap_or_else(|| "none".into());
                    if *failover {
                        metrics()
                            .failovers
                            .with_label_values(&[cause.as_str()])
                            .inc();
                        warn!(%from, %to, %reason, "failover: primary role moved");
                    } else {
                        info!(%from, %to, %reason, "primary role changed");
                    }
                }
                Transition::ActiveLost {
                    node,
                    reason,
                    cause,
                } => {
                    metrics()
                        .failovers
                        .with_label_values(&[cause.as_str()])
                        .inc();
                    warn!(node = %name(*node), %reason, "failover: node left active service, its twin takes all traffic");
                }
            }
        }
        // Publish first, so that retries of the requests cut below already
        // see the twin as the only choice.
        self.publish();
        self.export();
        if self.config.health.shutdown_sessions_on_down {
            for n in newly_down {
                let rt = &self.nodes[n];
                let cut = rt.sessions.cut_all(rt.address);
                if cut > 0 {
                    metrics()
                        .sessions_cut
                        .with_label_values(&[rt.name.as_str()])
                        .inc_by(cut as u64);
                    info!(node = %rt.name, cut, "cut upstream connections to the node declared down");
                }
            }
        }
    }

    fn publish(&self) {
        let order = self.cluster.serving_order();
        let weights = [0, 1].map(|n| {
            let w = u64::from(self.config.nodes[n].weight)
                * u64::from(self.cluster.node(n).weight_percent)
                / 100;
            w.min(u64::from(u32::MAX)) as u32
        });
        let current = self.shared.snapshot.load();
        if current.order == order && !self.weights_changed(&current, weights) {
            return;
        }
        let snap = Snapshot::new(self.config.clone(), self.nodes.clone(), order, weights);
        self.shared.snapshot.store(Arc::new(snap));
    }

    fn weights_changed(&self, current: &Snapshot, weights: [u32; 2]) -> bool {
        current.weights() != weights
    }

    /// The node's state as the gateway sees it, for metrics and status.
    pub fn node_state(&self, n: NodeId) -> &'static str {
        let node = self.cluster.node(n);
        match node.health {
            Health::Unknown => "unknown",
            Health::Up if node.draining => "draining",
            Health::Up => "ready",
            Health::Down => match self.agent_state[n].as_deref() {
                Some(s) => NODE_STATES
                    .iter()
                    .copied()
                    .find(|&k| k == s && k != "ready" && k != "draining")
                    .unwrap_or("down"),
                None => "down",
            },
        }
    }

    fn export(&self) {
        let m = metrics();
        for n in 0..2 {
            let name = self.config.nodes[n].name.as_str();
            let node = self.cluster.node(n);
            m.node_up
                .with_label_values(&[name])
                .set(i64::from(node.health == Health::Up));
            let role = self.cluster.role(n);
            for r in Role::ALL {
                m.node_role
                    .with_label_values(&[name, r.as_str()])
                    .set(i64::from(r == role));
            }
            let state = self.node_state(n);
            for s in NODE_STATES {
                m.node_state
                    .with_label_values(&[name, s])
                    .set(i64::from(s == state));
            }
        }
    }

    /// Runs until `shutdown` turns true: applies events and wakes up for
    /// timed transitions.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let deadline = self.cluster.next_deadline();
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.apply(ev, Instant::now()),
                    None => return,
                },
                _ = sleep_until_opt(deadline) => self.tick(Instant::now()),
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { return; }
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Checks node `node` forever, reading the settings from the current
/// snapshot before every check so that they can change at run time.
pub async fn run_checker(
    node: NodeId,
    shared: Arc<Shared>,
    checker: Arc<Checker>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let snap = shared.snapshot.load_full();
        let cfg = &snap.config;
        let started = Instant::now();
        let outcome = tokio::select! {
            o = checker.check(&cfg.nodes[node], &cfg.health) => o,
            _ = shutdown.changed() => return,
        };
        if shared.events.send(Event::Check { node, outcome }).is_err() {
            return;
        }
        let pause = next_check_in(cfg.health.interval, started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
            }
        }
    }
}
