//! The control loop: the one owner of the failover state machine.
//!
//! ```text
//!   health checker (per node) ──┐
//!   proxy (passive failures) ───┼─ Event ─▶ Controller ─▶ ArcSwap<Snapshot> ─▶ proxy (every request)
//!   admin API, reload ──────────┘ (+ reply)    │       ─▶ ArcSwap<Status>   ─▶ admin API
//!                                               └─▶ logs, metrics, cutting sessions to a dead node
//! ```
//!
//! Events arrive on an unbounded channel (sending never blocks a request);
//! commands carry a oneshot channel for their answer. Every change is
//! logged at info with its reason, counted, recorded for the status page
//! and published as a new routing snapshot.

use crate::config::GatewayConfig;
use crate::failover::{
    AdminState, Cluster, Health, NodeId, Observation, Role, Rules, SwitchoverError, Transition,
};
use crate::health::{next_check_in, CheckOutcome, Checker};
use crate::metrics::metrics;
use crate::node::{NodeRuntime, Resolved};
use crate::pair::{Exchange, OperatorState, Vrrp};
use crate::routing::Snapshot;
use crate::status::{timestamp, CheckRecord, NodeStatus, Recent, Status, TransitionRecord};
use crate::tls::CertResolver;
use arc_swap::ArcSwap;
use operator::admin_value;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

/// Something the controller must know about or do.
#[derive(Debug)]
pub enum Event {
    Check {
        node: NodeId,
        outcome: CheckOutcome,
    },
    Passive {
        node: NodeId,
        reason: String,
    },
    Admin {
        node: NodeId,
        state: AdminState,
        /// A soft drain: the node's sessions finish there (affinity on).
        soft: bool,
        reply: oneshot::Sender<()>,
    },
    Switchover {
        to: NodeId,
        reply: oneshot::Sender<Result<(), SwitchoverError>>,
    },
    /// DNS gave node `node` new addresses.
    Resolved {
        node: NodeId,
        resolved: Resolved,
    },
    /// Put a validated configuration in force; answers the new generation.
    Reload {
        config: Arc<GatewayConfig>,
        reply: oneshot::Sender<u64>,
    },
    /// The peer gateway's side of an exchange: merge its operator state
    /// (and follow its primary where that is due); answers ours, merged.
    Peer {
        theirs: Box<Exchange>,
        reply: oneshot::Sender<Arc<OperatorState>>,
    },
    /// keepalived told the gateway its VRRP state.
    Vrrp {
        state: Vrrp,
    },
    /// An operator's weight for a node (`None`: the configured one again).
    Weight {
        node: NodeId,
        weight: Option<u32>,
        reply: oneshot::Sender<()>,
    },
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Switchover(#[from] SwitchoverError),
    #[error("no node is named `{0}`")]
    UnknownNode(String),
    #[error("the gateway is shutting down")]
    Stopped,
    #[error("the peer gateway cannot be reached ({0}): a switchover made on one gateway alone would give the twins two primaries; force it if the peer is down for good")]
    PeerUnreachable(String),
}

/// What the request path and the admin API share with the control plane.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub status: ArcSwap<Status>,
    events: mpsc::UnboundedSender<Event>,
    /// The HTTPS listener's certificate, replaced on reload.
    pub cert: Option<Arc<CertResolver>>,
    /// This process is handing over to a new one (binary upgrade) or
    /// stopping: every response closes its downstream connection, so that
    /// clients move to fresh connections before this process stops reading.
    pub leaving: std::sync::atomic::AtomicBool,
    /// This process is stopping for good (not handing over to a new one):
    /// the pair's other gateway should take the virtual IP now.
    pub stopping: std::sync::atomic::AtomicBool,
    pub config_path: PathBuf,
    /// Sessions and the node each is bound to (session affinity).
    pub affinity: crate::affinity::Table,
    /// The proxy's and the control loop's beats (`/healthz`, watchdog).
    pub self_health: Arc<crate::selfcheck::SelfHealth>,
    /// The operator's state as the controller last published it.
    ops: watch::Receiver<Arc<OperatorState>>,
    /// The gateway pair: VRRP state, the peer as last seen.
    pub pair: crate::pair::PairShared,
}

impl Shared {
    /// Reports a failure seen on a real request; never blocks.
    pub fn passive_failure(&self, node: NodeId, reason: String) {
        // The receiver only goes away at shutdown; nothing to report then.
        let _ = self.events.send(Event::Passive { node, reason });
    }

    /// The index of the node called `name` in the configuration in force.
    pub fn node_index(&self, name: &str) -> Result<NodeId, ControlError> {
        let snap = self.snapshot.load();
        snap.config
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| ControlError::UnknownNode(name.to_string()))
    }

    /// An operator's drain (`soft`: sessions bound to the node finish
    /// there first), undrain or maintenance.
    pub async fn set_admin(
        &self,
        node: NodeId,
        state: AdminState,
        soft: bool,
    ) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Admin {
            node,
            state,
            soft,
            reply,
        })?;
        rx.await.map_err(|_| ControlError::Stopped)
    }

    /// An operator's switchover; with a pair, refused while the peer
    /// cannot be reached unless `force`.
    pub async fn switchover(&self, to: NodeId, force: bool) -> Result<(), ControlError> {
        if let Some(pair) = &self.snapshot.load().config.pair {
            if !force && !self.pair.reachable(pair.sync_interval) {
                let why = self
                    .pair
                    .peer(pair.sync_interval)
                    .last_error
                    .unwrap_or_else(|| "no exchange yet".into());
                return Err(ControlError::PeerUnreachable(why));
            }
        }
        let (reply, rx) = oneshot::channel();
        self.send(Event::Switchover { to, reply })?;
        Ok(rx.await.map_err(|_| ControlError::Stopped)??)
    }

    /// Reports new DNS results for node `node`.
    pub fn resolved(&self, node: NodeId, resolved: Resolved) {
        let _ = self.events.send(Event::Resolved { node, resolved });
    }

    pub async fn apply_config(&self, config: Arc<GatewayConfig>) -> Result<u64, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Reload { config, reply })?;
        rx.await.map_err(|_| ControlError::Stopped)
    }

    /// Changes made here (from now on) to the operator's state.
    pub fn operator_state(&self) -> watch::Receiver<Arc<OperatorState>> {
        self.ops.clone()
    }

    /// What this gateway (called `name` in the pair) sends its peer.
    pub fn exchange_of(&self, name: &str) -> Exchange {
        Exchange {
            from: name.to_string(),
            state: (**self.ops.borrow()).clone(),
            primary: self.status.load().primary.clone(),
            vrrp: self.pair.vrrp(),
        }
    }

    /// Hands the peer's side of an exchange to the controller; answers
    /// the operator state once merged.
    pub async fn peer_state(&self, theirs: Exchange) -> Result<Arc<OperatorState>, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Peer {
            theirs: Box::new(theirs),
            reply,
        })?;
        rx.await.map_err(|_| ControlError::Stopped)
    }

    /// An operator's weight for `node` in active-active (`None`: back to
    /// the configured weight).
    pub async fn set_weight(&self, node: NodeId, weight: Option<u32>) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Weight {
            node,
            weight,
            reply,
        })?;
        rx.await.map_err(|_| ControlError::Stopped)
    }

    /// What keepalived says this gateway is now.
    pub fn vrrp(&self, state: Vrrp) -> Result<(), ControlError> {
        self.pair.set_vrrp(state);
        self.send(Event::Vrrp { state })
    }

    fn send(&self, e: Event) -> Result<(), ControlError> {
        self.events.send(e).map_err(|_| ControlError::Stopped)
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

/// How many check results each node keeps for the status page.
const HISTORY: usize = 30;

/// What the controller remembers of each node beyond the state machine.
#[derive(Default, Clone)]
struct NodeNotes {
    agent_state: Option<String>,
    version: Option<String>,
    last_check: Option<CheckRecord>,
    last_transition: Option<TransitionRecord>,
    history: VecDeque<&'static str>,
}

/// A soft drain in progress: the node takes no new sessions, and requests
/// bound to it are still sent to it until none has come for
/// `affinity.idle_timeout` or `affinity.drain_timeout` has passed.
#[derive(Debug, Clone, Copy)]
struct SoftDrain {
    deadline: Instant,
    until: SystemTime,
    /// `operator` or `agent`.
    by: &'static str,
}

/// How often sessions are counted and soft drains looked at.
const SESSION_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Controller {
    cluster: Cluster,
    config: Arc<GatewayConfig>,
    nodes: [Arc<NodeRuntime>; 2],
    resolved: [Resolved; 2],
    shared: Arc<Shared>,
    notes: [NodeNotes; 2],
    transitions: Recent<TransitionRecord>,
    generation: u64,
    soft: [Option<SoftDrain>; 2],
    /// Sessions per node at the last sweep.
    sessions: [u64; 2],
    /// The operator's decisions, kept in a file and in step with the peer
    /// gateway (see `operator.rs`).
    ops: OperatorState,
    ops_tx: watch::Sender<Arc<OperatorState>>,
    /// Operators' weights, over the configured ones.
    weights: [Option<u32>; 2],
}

mod operator;

impl Controller {
    pub fn new(
        config: Arc<GatewayConfig>,
        config_path: PathBuf,
        cert: Option<Arc<CertResolver>>,
    ) -> (Self, Arc<Shared>, mpsc::UnboundedReceiver<Event>) {
        let resolved = [0, 1].map(|i| Resolved::from_config(&config.nodes[i]));
        let nodes = [0, 1].map(|i| {
            Arc::new(NodeRuntime::new(
                i,
                &config.nodes[i],
                &config,
                None,
                resolved[i],
            ))
        });
        let cluster = Cluster::new(Rules::from_config(&config));
        let (tx, rx) = mpsc::unbounded_channel();
        let (ops_tx, ops_rx) = watch::channel(Arc::new(OperatorState::default()));
        let snapshot = Snapshot::new(
            config.clone(),
            nodes.clone(),
            Vec::new(),
            [0, 0],
            crate::routing::Bindings::NONE,
        );
        let placeholder = Status {
            mode: config.mode.as_str(),
            affinity: crate::status::AffinityStatus::of(&config),
            primary: None,
            config_generation: 1,
            config_file: config_path.display().to_string(),
            nodes: Vec::new(),
            transitions: Vec::new(),
        };
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            status: ArcSwap::from_pointee(placeholder),
            events: tx,
            cert,
            leaving: std::sync::atomic::AtomicBool::new(false),
            stopping: std::sync::atomic::AtomicBool::new(false),
            config_path,
            affinity: Default::default(),
            self_health: Default::default(),
            ops: ops_rx,
            pair: Default::default(),
        });
        metrics().config_generation.set(1);
        let c = Controller {
            cluster,
            config,
            nodes,
            resolved,
            shared: shared.clone(),
            notes: Default::default(),
            transitions: Recent::new(50),
            generation: 1,
            soft: [None, None],
            sessions: [0, 0],
            ops: OperatorState::default(),
            ops_tx,
            weights: [None, None],
        };
        c.export();
        c.publish_status();
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
            checker.check(&self.config.nodes[0].name, self.resolved[0].agent, hc),
            checker.check(&self.config.nodes[1].name, self.resolved[1].agent, hc)
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
        match event {
            Event::Check { node, outcome } => {
                self.note_check(node, &outcome);
                let was_draining = self.cluster.node(node).draining;
                let t = self.cluster.observe(node, outcome.observation, now);
                let draining = self.cluster.node(node).draining;
                if draining && !was_draining {
                    self.start_soft_drain(node, "agent", now);
                } else if !draining && self.soft[node].is_some_and(|s| s.by == "agent") {
                    self.soft[node] = None;
                }
                self.after(t, false);
            }
            Event::Passive { node, reason } => {
                if self.cluster.node(node).health == Health::Up {
                    let t = self
                        .cluster
                        .observe(node, Observation::PassiveFailure { reason }, now);
                    self.after(t, false);
                }
            }
            Event::Admin {
                node,
                state,
                soft,
                reply,
            } => {
                self.set_admin(node, state, soft, now);
                self.operator_decided(
                    &crate::pair::node_key(&self.name(node)),
                    admin_value(state, soft),
                );
                let _ = reply.send(());
            }
            Event::Switchover { to, reply } => {
                let result = self
                    .cluster
                    .switchover(to, now)
                    .map(|t| self.after(t, false));
                match &result {
                    Ok(()) => self.operator_decided(crate::pair::PRIMARY_KEY, &self.name(to)),
                    Err(e) => {
                        warn!(to = %self.config.nodes[to].name, error = %e, "switchover refused")
                    }
                }
                let _ = reply.send(result);
            }
            Event::Peer { theirs, reply } => {
                self.merge_peer(&theirs, now);
                let _ = reply.send(self.ops_tx.borrow().clone());
            }
            Event::Vrrp { state } => self.vrrp_changed(state),
            Event::Weight {
                node,
                weight,
                reply,
            } => {
                self.set_weight(node, weight);
                let value = weight.map_or_else(|| "config".to_string(), |w| w.to_string());
                self.operator_decided(&crate::pair::weight_key(&self.name(node)), &value);
                let _ = reply.send(());
            }
            Event::Resolved { node, resolved } => self.resolved(node, resolved),
            Event::Reload { config, reply } => {
                let generation = self.reload(config, now);
                let _ = reply.send(generation);
            }
        }
    }

    /// Starts a soft drain of `node` when affinity is on and the node is up.
    fn start_soft_drain(&mut self, node: NodeId, by: &'static str, now: Instant) {
        let a = &self.config.affinity;
        let state = self.cluster.node(node);
        // An agent's drain of a node the operator took out already (a
        // drain, over or not, or maintenance) opens nothing again.
        let taken_out = by == "agent" && state.admin != AdminState::Active;
        if !a.enabled() || state.health != Health::Up || taken_out {
            return;
        }
        // Counted afresh: the last sweep may be up to a second old.
        self.sessions = self.shared.affinity.sweep(a.idle_timeout);
        self.soft[node] = Some(SoftDrain {
            deadline: now + a.drain_timeout,
            until: SystemTime::now() + a.drain_timeout,
            by,
        });
        let reason = format!(
            "{by}: soft drain, {} sessions finish on the node for at most {}",
            self.sessions[node],
            humantime::format_duration(a.drain_timeout)
        );
        info!(node = %self.name(node), %reason, "soft drain started");
        self.record(
            timestamp(SystemTime::now()),
            Some(node),
            "soft drain started".into(),
            reason,
        );
    }

    /// Counts sessions per node, and ends the soft drains whose sessions
    /// stopped coming or whose `drain_timeout` passed.
    pub fn sweep_sessions(&mut self, now: Instant) {
        let a = &self.config.affinity;
        if !a.enabled() {
            return;
        }
        self.sessions = self.shared.affinity.sweep(a.idle_timeout);
        self.export_sessions();
        let mut ended = false;
        for n in 0..2 {
            let Some(soft) = self.soft[n] else { continue };
            let why = if self.sessions[n] == 0 {
                "no session left on the node".to_string()
            } else if now >= soft.deadline {
                format!(
                    "affinity.drain_timeout passed: {} sessions move to the twin",
                    self.sessions[n]
                )
            } else {
                continue;
            };
            self.soft[n] = None;
            ended = true;
            info!(node = %self.name(n), reason = %why, "soft drain ended; the node is drained");
            self.record(
                timestamp(SystemTime::now()),
                Some(n),
                "soft drain ended".into(),
                why,
            );
        }
        if ended {
            // The bindings changed: the snapshot is published anew.
            self.publish(false);
        }
        self.publish_status();
    }

    /// Sessions per node and the table's size, as metrics. Right after a
    /// sweep (or a clear) the table holds exactly the sessions counted.
    fn export_sessions(&self) {
        let m = metrics();
        m.affinity_table_entries
            .set((self.sessions[0] + self.sessions[1]) as i64);
        for n in 0..2 {
            m.affinity_sessions
                .with_label_values(&[self.config.nodes[n].name.as_str()])
                .set(self.sessions[n] as i64);
        }
    }

    /// Keeps a transition for the status page (and as the node's last).
    fn record(&mut self, at: String, node: Option<NodeId>, event: String, reason: String) {
        let record = TransitionRecord {
            at,
            node: node.map(|n| self.name(n)),
            event,
            reason,
        };
        if let Some(n) = node {
            self.notes[n].last_transition = Some(record.clone());
        }
        self.transitions.push(record);
    }

    /// Which nodes take the requests bound to them, given the serving order.
    fn bindings(&self, order: &[NodeId]) -> crate::routing::Bindings {
        use crate::config::Mode;
        if !self.config.affinity.enabled() {
            return crate::routing::Bindings::NONE;
        }
        let serves = [0, 1].map(|n| {
            let node = self.cluster.node(n);
            let serving = match self.config.mode {
                Mode::ActiveActive => order.contains(&n),
                Mode::ActiveStandby => order.first() == Some(&n),
            };
            serving || (self.soft[n].is_some() && node.health == Health::Up)
        });
        let moved = [0, 1].map(|n| {
            let node = self.cluster.node(n);
            if node.health != Health::Up {
                "down"
            } else if node.admin == AdminState::Maintenance {
                "maintenance"
            } else if !node.eligible() {
                "drain"
            } else {
                "role"
            }
        });
        crate::routing::Bindings { serves, moved }
    }

    /// Lets time pass (flap holds, failback hold-down).
    pub fn tick(&mut self, now: Instant) {
        let t = self.cluster.tick(now);
        self.after(t, false);
    }

    fn note_check(&mut self, node: NodeId, outcome: &CheckOutcome) {
        let name = self.config.nodes[node].name.clone();
        metrics()
            .health_checks
            .with_label_values(&[name.as_str(), outcome.result])
            .inc();
        let detail = match &outcome.observation {
            Observation::CheckFailed { reason } => {
                if self.cluster.node(node).health == Health::Up {
                    warn!(node = %name, %reason, "readiness check failed");
                }
                reason.clone()
            }
            Observation::CheckPassed { weight_percent } => {
                format!("ready, weight {weight_percent}%")
            }
            Observation::CheckDraining => "draining".into(),
            Observation::PassiveFailure { reason } => reason.clone(),
        };
        let notes = &mut self.notes[node];
        notes.agent_state = outcome.agent_state.clone();
        if outcome.version.is_some() {
            notes.version = outcome.version.clone();
        }
        notes.last_check = Some(CheckRecord {
            at: timestamp(SystemTime::now()),
            result: outcome.result,
            detail,
        });
        if notes.history.len() == HISTORY {
            notes.history.pop_front();
        }
        notes.history.push_back(outcome.result);
    }

    /// The addresses of node `n` as they stand now: DNS results carry over
    /// to a new configuration where the host name stayed the same.
    fn carry_resolution(&self, new: &GatewayConfig, n: NodeId) -> Resolved {
        let (old, cur) = (&self.config.nodes[n], &new.nodes[n]);
        let keep = |o: &crate::config::Target,
                    c: &crate::config::Target,
                    was: Option<std::net::SocketAddr>| {
            c.ip().or_else(|| (o == c).then_some(was).flatten())
        };
        Resolved {
            address: keep(&old.address, &cur.address, self.resolved[n].address),
            agent: keep(&old.agent, &cur.agent, self.resolved[n].agent),
        }
    }

    /// Applies new DNS results for node `n`. The node keeps its health:
    /// it is the same node at a new address, and the next readiness check
    /// (within one interval) and passive detection verify the new address.
    /// Requests in flight to the old address finish there.
    fn resolved(&mut self, n: NodeId, resolved: Resolved) {
        if self.resolved[n] == resolved {
            return;
        }
        let before = self.resolved[n];
        self.resolved[n] = resolved;
        let keep = (before.address == resolved.address).then(|| self.nodes[n].sessions.clone());
        let mut nodes = self.nodes.clone();
        nodes[n] = Arc::new(NodeRuntime::new(
            n,
            &self.config.nodes[n],
            &self.config,
            keep,
            resolved,
        ));
        self.nodes = nodes;
        let show =
            |a: Option<std::net::SocketAddr>| a.map_or("unresolved".to_string(), |a| a.to_string());
        let reason = format!(
            "DNS: {} now at {} (agent {}), was {} (agent {})",
            self.config.nodes[n].address,
            show(resolved.address),
            show(resolved.agent),
            show(before.address),
            show(before.agent)
        );
        info!(node = %self.name(n), %reason, "node address changed");
        self.transitions.push(TransitionRecord {
            at: timestamp(SystemTime::now()),
            node: Some(self.name(n)),
            event: "address changed".into(),
            reason,
        });
        self.after(Vec::new(), true);
    }

    fn reload(&mut self, new: Arc<GatewayConfig>, now: Instant) -> u64 {
        let old = self.config.clone();
        let (oa, na) = (&old.affinity, &new.affinity);
        if oa.mode != na.mode || oa.cookie != na.cookie {
            // Sessions learned for another cookie mean nothing now.
            self.shared.affinity.clear();
            self.sessions = [0, 0];
            self.export_sessions();
        }
        if !na.enabled() {
            self.soft = [None, None];
        }
        let resolved = [0, 1].map(|n| self.carry_resolution(&new, n));
        let reset = [0, 1].map(|n| {
            let (o, c) = (&old.nodes[n], &new.nodes[n]);
            o.name != c.name || o.address != c.address || o.agent != c.agent
        });
        self.nodes = [0, 1].map(|n| {
            let keep = (!reset[n]).then(|| self.nodes[n].sessions.clone());
            Arc::new(NodeRuntime::new(n, &new.nodes[n], &new, keep, resolved[n]))
        });
        self.resolved = resolved;
        for (n, r) in reset.iter().enumerate() {
            if *r {
                self.notes[n] = NodeNotes::default();
                // Another node now: an operator's weight was for the old one.
                self.weights[n] = None;
            }
        }
        if let (Some(resolver), Some(https)) = (&self.shared.cert, &new.listeners.https) {
            resolver.replace(https.cert.clone());
        }
        self.config = new;
        self.generation += 1;
        metrics().config_generation.set(self.generation as i64);
        let mut reasons = Vec::new();
        for (n, r) in reset.iter().enumerate() {
            if *r {
                reasons.push(format!(
                    "node {} now at {} (agent {}): checked anew",
                    self.config.nodes[n].name,
                    self.config.nodes[n].address,
                    self.config.nodes[n].agent
                ));
            }
        }
        let reason = if reasons.is_empty() {
            "configuration reloaded; node health kept".to_string()
        } else {
            reasons.join("; ")
        };
        info!(generation = self.generation, %reason, "configuration in force");
        self.transitions.push(TransitionRecord {
            at: timestamp(SystemTime::now()),
            node: None,
            event: format!("config generation {}", self.generation),
            reason,
        });
        let t = self
            .cluster
            .reconfigure(Rules::from_config(&self.config), reset, now);
        self.after(t, true);
        self.keep_operator_primary(now);
        self.generation
    }

    fn name(&self, n: NodeId) -> String {
        self.config.nodes[n].name.clone()
    }

    fn after(&mut self, transitions: Vec<Transition>, force_publish: bool) {
        let mut newly_down = Vec::new();
        let at = timestamp(SystemTime::now());
        for t in &transitions {
            let (node, event, reason) = match t {
                Transition::Health {
                    node,
                    from,
                    to,
                    reason,
                } => {
                    info!(node = %self.name(*node), from = from.as_str(), to = to.as_str(), %reason, "node health changed");
                    if *from == Health::Up && *to == Health::Down {
                        newly_down.push(*node);
                    }
                    (
                        Some(*node),
                        format!("health {} → {}", from.as_str(), to.as_str()),
                        reason.clone(),
                    )
                }
                Transition::Damped { node, until } => {
                    let left =
                        humantime::format_duration(until.saturating_duration_since(Instant::now()));
                    info!(node = %self.name(*node), hold = %left, "node is flapping; held down");
                    (
                        Some(*node),
                        "flap damping".into(),
                        format!("held down for {left}"),
                    )
                }
                Transition::Admin { node, from, to } => {
                    info!(node = %self.name(*node), from = from.as_str(), to = to.as_str(), "operator changed the node's admin state");
                    (
                        Some(*node),
                        format!("admin {} → {}", from.as_str(), to.as_str()),
                        "operator".into(),
                    )
                }
                Transition::Primary {
                    from,
                    to,
                    reason,
                    cause,
                    failover,
                } => {
                    let from = from.map(|n| self.name(n)).unwrap_or_else(|| "none".into());
                    let to_name = to.map(|n| self.name(n)).unwrap_or_else(|| "none".into());
                    metrics()
                        .role_changes
                        .with_label_values(&[cause.as_str()])
                        .inc();
                    if *failover {
                        metrics()
                            .failovers
                            .with_label_values(&[cause.as_str()])
                            .inc();
                        warn!(%from, to = %to_name, %reason, "failover: primary role moved");
                    } else {
                        info!(%from, to = %to_name, %reason, "primary role changed");
                    }
                    let kind = if *failover { "failover" } else { "primary" };
                    (*to, format!("{kind} {from} → {to_name}"), reason.clone())
                }
                Transition::ActiveLost {
                    node,
                    reason,
                    cause,
                } => {
                    if cause.is_failure() {
                        metrics()
                            .failovers
                            .with_label_values(&[cause.as_str()])
                            .inc();
                        warn!(node = %self.name(*node), %reason, "failover: node left active service, its twin takes all traffic");
                    } else {
                        info!(node = %self.name(*node), %reason, "node left active service");
                    }
                    (Some(*node), "left active service".into(), reason.clone())
                }
            };
            self.record(at.clone(), node, event, reason);
        }
        // Publish first, so that retries of the requests cut below already
        // see the twin as the only choice.
        self.publish(force_publish);
        self.export();
        self.publish_status();
        if self.config.health.shutdown_sessions_on_down {
            for n in newly_down {
                let rt = &self.nodes[n];
                let Some(address) = rt.address else { continue };
                let cut = rt.sessions.cut_all(address);
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

    fn effective_weights(&self) -> [u32; 2] {
        [0, 1].map(|n| {
            let w = u64::from(self.weights[n].unwrap_or(self.config.nodes[n].weight))
                * u64::from(self.cluster.node(n).weight_percent)
                / 100;
            w.min(u64::from(u32::MAX)) as u32
        })
    }

    fn publish(&mut self, force: bool) {
        let order = self.cluster.serving_order();
        for n in 0..2 {
            // A node that went down or left drain ends its soft drain.
            let node = self.cluster.node(n);
            if node.health != Health::Up || (!node.draining && node.admin != AdminState::Drain) {
                self.soft[n] = None;
            }
        }
        let weights = self.effective_weights();
        let bindings = self.bindings(&order);
        let current = self.shared.snapshot.load();
        if !force
            && current.order == order
            && current.weights() == weights
            && current.bindings() == bindings
        {
            return;
        }
        let snap = Snapshot::new(
            self.config.clone(),
            self.nodes.clone(),
            order,
            weights,
            bindings,
        );
        self.shared.snapshot.store(Arc::new(snap));
    }

    /// The node's state as the gateway sees it, for metrics and status.
    pub fn node_state(&self, n: NodeId) -> &'static str {
        let node = self.cluster.node(n);
        match node.health {
            Health::Unknown => "unknown",
            Health::Up if node.admin == AdminState::Maintenance => "maintenance",
            Health::Up if node.draining || node.admin == AdminState::Drain => "draining",
            Health::Up => "ready",
            Health::Down => match self.notes[n].agent_state.as_deref() {
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

    fn publish_status(&self) {
        let weights = self.effective_weights();
        let nodes = (0..2)
            .map(|n| {
                let c = &self.config.nodes[n];
                let s = self.cluster.node(n);
                let notes = &self.notes[n];
                NodeStatus {
                    name: c.name.clone(),
                    address: show_target(&c.address, self.resolved[n].address),
                    agent: show_target(&c.agent, self.resolved[n].agent),
                    health: s.health.as_str(),
                    state: self.node_state(n),
                    admin: s.admin.as_str(),
                    role: self.cluster.role(n).as_str(),
                    eligible: s.eligible(),
                    weight: c.weight,
                    operator_weight: self.weights[n],
                    effective_weight: weights[n],
                    inflight: 0,
                    requests: Default::default(),
                    version: notes.version.clone(),
                    last_check: notes.last_check.clone(),
                    last_transition: notes.last_transition.clone(),
                    history: notes.history.iter().copied().collect(),
                    sessions: self.sessions[n],
                    soft_drain: self.soft[n].map(|d| crate::status::SoftDrainStatus {
                        by: d.by,
                        until: timestamp(d.until),
                    }),
                }
            })
            .collect();
        let status = Status {
            mode: self.config.mode.as_str(),
            affinity: crate::status::AffinityStatus::of(&self.config),
            primary: match self.config.mode {
                crate::config::Mode::ActiveStandby => self.cluster.primary().map(|p| self.name(p)),
                crate::config::Mode::ActiveActive => None,
            },
            config_generation: self.generation,
            config_file: self.shared.config_path.display().to_string(),
            nodes,
            transitions: self.transitions.to_vec(),
        };
        self.shared.status.store(Arc::new(status));
    }

    /// Runs until `shutdown` turns true: applies events and wakes up for
    /// timed transitions.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut sweep = tokio::time::interval(SESSION_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // At least once a second (the sweep's tick).
            self.shared.self_health.control_alive();
            let deadline = self.cluster.next_deadline();
            tokio::select! {
                _ = sweep.tick() => self.sweep_sessions(Instant::now()),
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

/// `10.0.0.1:80`, or `portal-a.example:80 (10.0.0.1:80)` for a host name.
fn show_target(t: &crate::config::Target, resolved: Option<std::net::SocketAddr>) -> String {
    match (t, resolved) {
        (crate::config::Target::Ip(a), _) => a.to_string(),
        (host, Some(a)) => format!("{host} ({a})"),
        (host, None) => format!("{host} (unresolved)"),
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
        let agent = snap.nodes[node].agent;
        let outcome = tokio::select! {
            o = checker.check(&cfg.nodes[node].name, agent, &cfg.health) => o,
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
