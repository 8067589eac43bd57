//! Node health, roles and failover as a pure state machine.
//!
//! No IO and no clock live here: the controller feeds [`Observation`]s
//! with the time they were made, and gets back the [`Transition`]s they
//! caused. That keeps every timing rule (rise/fall, flap damping, failback
//! hold-down) testable with made-up instants.
//!
//! ```text
//!                 check ok (first check)            fall failed checks,
//!   ┌─────────┐ ───────────────────────────▶ ┌────┐ or one passive hard failure  ┌──────┐
//!   │ Unknown │                              │ Up │ ───────────────────────────▶ │ Down │
//!   └─────────┘ ──────────┐                  └────┘ ◀─────────────────────────── └──────┘
//!                first    │                     ▲    rise passed checks, and no     │
//!                check    └─────────────────────┼──  flap hold pending ─────────────┘
//!                failed ───────────────────────────────────────────────────────────▶ Down
//! ```
//!
//! Roles follow health. In active-standby exactly one node is primary
//! while any node is eligible (up and not draining). The primary changes
//! only when it stops being eligible (failover), or, with preemptive
//! failback, when the configured primary has been eligible for the whole
//! hold-down. In active-active every eligible node serves; a node leaving
//! while its twin serves is counted as a failover too.
//!
//! Flap damping: every time a node goes down its failure is remembered for
//! `flap.window`. Once it has failed `flap.threshold` times in the window,
//! it is kept down for `flap.hold` after it looks healthy again, doubling
//! with each further failure up to `flap.max_hold`.

use crate::config::{FlapDamping, GatewayConfig, Mode};
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// Index of a node in the configuration (0 or 1).
pub type NodeId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet.
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
    Active,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Primary, Role::Standby, Role::Active];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Active => "active",
        }
    }
}

/// What the operator asked of a node (admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Serves when healthy.
    Active,
    /// No new requests; requests in flight finish.
    Drain,
    /// No traffic at all, and no failover onto it.
    Maintenance,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Active => "active",
            AdminState::Drain => "drain",
            AdminState::Maintenance => "maintenance",
        }
    }
}

/// Why a switchover was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchoverError {
    #[error("switchover needs active-standby mode")]
    NotActiveStandby,
    #[error("the target cannot serve: {0}")]
    NotEligible(String),
}

/// Why a node stopped serving, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Active readiness checks failed.
    HealthCheck,
    /// The proxy saw it fail (refused, reset, error limit).
    Passive,
    /// The agent reports draining or weight 0.
    Draining,
    /// Failback to the configured primary.
    Failback,
    /// An operator's drain, maintenance or switchover.
    Operator,
    /// First choice of a primary, or the only node left.
    Initial,
    /// This gateway took the primary its peer gateway serves with (a
    /// gateway that starts, or the VRRP BACKUP, follows the MASTER).
    Pair,
}

impl Cause {
    pub const ALL: [Cause; 7] = [
        Cause::HealthCheck,
        Cause::Passive,
        Cause::Draining,
        Cause::Failback,
        Cause::Operator,
        Cause::Initial,
        Cause::Pair,
    ];

    /// Unplanned causes are failovers; the rest are planned moves.
    pub fn is_failure(self) -> bool {
        matches!(self, Cause::HealthCheck | Cause::Passive)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::HealthCheck => "health_check",
            Cause::Passive => "passive",
            Cause::Draining => "draining",
            Cause::Failback => "failback",
            Cause::Operator => "operator",
            Cause::Initial => "initial",
            Cause::Pair => "pair",
        }
    }
}

/// What was learnt about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The readiness check answered `ready`, with the agent's weight in
    /// percent of the configured weight.
    CheckPassed { weight_percent: u32 },
    /// The agent answered `draining`: alive, but takes no new requests.
    CheckDraining,
    /// The readiness check failed (timeout, refused, other state, ...).
    CheckFailed { reason: String },
    /// The proxy saw the node fail hard (refused or reset connection) or
    /// reach the passive error limit: down at once.
    PassiveFailure { reason: String },
}

/// What changed, for logs, metrics and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Health {
        node: NodeId,
        from: Health,
        to: Health,
        reason: String,
    },
    /// A node looked healthy again but is held down by flap damping.
    /// (Reasons never name nodes by index: the controller adds names.)
    Damped { node: NodeId, until: Instant },
    /// The active-standby primary changed. `failover` is false for the
    /// initial choice and for a planned failback.
    Primary {
        from: Option<NodeId>,
        to: Option<NodeId>,
        reason: String,
        /// Short, fixed cause for metric labels (see [`Cause`]).
        cause: Cause,
        failover: bool,
    },
    /// The operator changed a node's admin state.
    Admin {
        node: NodeId,
        from: AdminState,
        to: AdminState,
    },
    /// Active-active: a node stopped serving while its twin serves.
    ActiveLost {
        node: NodeId,
        reason: String,
        cause: Cause,
    },
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transition::Health {
                node,
                from,
                to,
                reason,
            } => write!(
                f,
                "node {node}: {} -> {} ({reason})",
                from.as_str(),
                to.as_str()
            ),
            Transition::Damped { node, .. } => write!(f, "node {node}: held down by flap damping"),
            Transition::Primary {
                from, to, reason, ..
            } => {
                write!(f, "primary {from:?} -> {to:?} ({reason})")
            }
            Transition::Admin { node, from, to } => {
                write!(f, "node {node}: admin {} -> {}", from.as_str(), to.as_str())
            }
            Transition::ActiveLost { node, reason, .. } => {
                write!(f, "node {node} left active service ({reason})")
            }
        }
    }
}

/// Everything known about one node.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub health: Health,
    /// The agent reports `draining`.
    pub draining: bool,
    /// The operator's state for the node.
    pub admin: AdminState,
    /// Agent-reported weight in percent of the configured weight.
    pub weight_percent: u32,
    ok_streak: u32,
    fail_streak: u32,
    /// When the node last became eligible, for the failback hold-down.
    eligible_since: Option<Instant>,
    /// Recent failures, for flap damping.
    failures: VecDeque<Instant>,
    held_until: Option<Instant>,
    /// Why the node last changed health.
    pub last_reason: String,
    last_cause: Cause,
    pub last_change: Option<Instant>,
}

impl NodeState {
    fn new() -> Self {
        NodeState {
            health: Health::Unknown,
            draining: false,
            admin: AdminState::Active,
            weight_percent: 100,
            ok_streak: 0,
            fail_streak: 0,
            eligible_since: None,
            failures: VecDeque::new(),
            held_until: None,
            last_reason: "not checked yet".into(),
            last_cause: Cause::Initial,
            last_change: None,
        }
    }

    /// May take new requests.
    pub fn eligible(&self) -> bool {
        self.health == Health::Up
            && !self.draining
            && self.admin == AdminState::Active
            && self.weight_percent > 0
    }

    pub fn held_until(&self) -> Option<Instant> {
        self.held_until
    }
}

/// Settings the state machine needs, taken from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub mode: Mode,
    pub preferred: NodeId,
    pub rise: u32,
    pub fall: u32,
    pub preempt: bool,
    pub hold_down: Duration,
    pub flap: FlapDamping,
    /// The readiness check interval: the first choice of a primary waits
    /// up to two of them for the configured one.
    pub interval: Duration,
}

impl Rules {
    pub fn from_config(c: &GatewayConfig) -> Self {
        Rules {
            mode: c.mode,
            preferred: c.primary,
            rise: c.health.rise,
            fall: c.health.fall,
            preempt: c.failback.preempt,
            hold_down: c.failback.hold_down,
            flap: c.flap,
            interval: c.health.interval,
        }
    }
}

/// The two twins and who serves.
#[derive(Debug, Clone)]
pub struct Cluster {
    rules: Rules,
    nodes: [NodeState; 2],
    primary: Option<NodeId>,
    /// The last node that was primary, to tell a failover from a return.
    last_primary: Option<NodeId>,
}

fn twin(n: NodeId) -> NodeId {
    1 - n
}

impl Cluster {
    pub fn new(rules: Rules) -> Self {
        Cluster {
            rules,
            nodes: [NodeState::new(), NodeState::new()],
            primary: None,
            last_primary: None,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn node(&self, n: NodeId) -> &NodeState {
        &self.nodes[n]
    }

    /// The active-standby primary, if any node can serve.
    pub fn primary(&self) -> Option<NodeId> {
        self.primary
    }

    pub fn role(&self, n: NodeId) -> Role {
        match self.rules.mode {
            Mode::ActiveActive => Role::Active,
            Mode::ActiveStandby if self.primary == Some(n) => Role::Primary,
            Mode::ActiveStandby if self.primary.is_none() && n == self.rules.preferred => {
                Role::Primary
            }
            Mode::ActiveStandby => Role::Standby,
        }
    }

    /// Nodes that may take new requests, in the order they should be tried:
    /// in active-standby the primary first, then the standby (retries only).
    pub fn serving_order(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = match self.primary {
            Some(p) => vec![p, twin(p)],
            None => vec![self.rules.preferred, twin(self.rules.preferred)],
        };
        v.retain(|&n| self.nodes[n].eligible());
        v
    }

    /// The next instant at which time alone can change something (a flap
    /// hold or the failback hold-down ending).
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        for n in &self.nodes {
            if let (Health::Down, Some(h)) = (n.health, n.held_until) {
                if n.ok_streak >= self.rules.rise {
                    consider(h);
                }
            }
        }
        if let Some(t) = self.first_choice_deadline() {
            consider(t);
        }
        if self.rules.mode == Mode::ActiveStandby && self.rules.preempt {
            let p = self.rules.preferred;
            if self.primary.is_some_and(|c| c != p) {
                if let Some(since) = self.nodes[p].eligible_since {
                    consider(since + self.rules.hold_down);
                }
            }
        }
        d
    }

    /// Applies one observation of node `n` made at `now`.
    pub fn observe(&mut self, n: NodeId, obs: Observation, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        let fall = self.rules.fall;
        let node = &mut self.nodes[n];
        match obs {
            Observation::CheckPassed { weight_percent } => {
                node.fail_streak = 0;
                node.ok_streak = node.ok_streak.saturating_add(1);
                node.draining = false;
                node.weight_percent = weight_percent;
                self.try_up(n, now, "readiness check passed", &mut out);
            }
            Observation::CheckDraining => {
                node.fail_streak = 0;
                node.ok_streak = node.ok_streak.saturating_add(1);
                node.draining = true;
                self.try_up(n, now, "agent reports draining", &mut out);
            }
            Observation::CheckFailed { reason } => {
                node.ok_streak = 0;
                node.fail_streak = node.fail_streak.saturating_add(1);
                let down = match node.health {
                    Health::Unknown => true,
                    Health::Up => node.fail_streak >= fall,
                    Health::Down => false,
                };
                if down {
                    let why = if node.health == Health::Unknown {
                        format!("first readiness check failed: {reason}")
                    } else {
                        format!("{fall} readiness checks failed, last: {reason}")
                    };
                    self.go_down(n, now, why, Cause::HealthCheck, &mut out);
                }
            }
            Observation::PassiveFailure { reason } => {
                node.ok_streak = 0;
                node.fail_streak = fall.max(node.fail_streak);
                if node.health != Health::Down {
                    self.go_down(
                        n,
                        now,
                        format!("passive: {reason}"),
                        Cause::Passive,
                        &mut out,
                    );
                }
            }
        }
        self.reconcile(now, &mut out);
        out
    }

    /// Sets the operator's state of node `n`.
    pub fn set_admin(&mut self, n: NodeId, to: AdminState, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        let from = self.nodes[n].admin;
        if from != to {
            self.nodes[n].admin = to;
            out.push(Transition::Admin { node: n, from, to });
            self.reconcile(now, &mut out);
        }
        out
    }

    /// Planned move of the primary role to `to`. The target becomes the
    /// configured primary too, so that preemptive failback does not take
    /// the role straight back.
    pub fn switchover(
        &mut self,
        to: NodeId,
        now: Instant,
    ) -> Result<Vec<Transition>, SwitchoverError> {
        if self.rules.mode != Mode::ActiveStandby {
            return Err(SwitchoverError::NotActiveStandby);
        }
        let target = &self.nodes[to];
        if !target.eligible() {
            let why = match target.health {
                Health::Up => node_reason(target).0,
                h => format!("health is {}: {}", h.as_str(), target.last_reason),
            };
            return Err(SwitchoverError::NotEligible(why));
        }
        self.rules.preferred = to;
        Ok(self.hand_role(
            to,
            now,
            "switchover requested by the operator".into(),
            Cause::Operator,
        ))
    }

    /// A planned move of the role to `to` (no-op if it has it).
    fn hand_role(
        &mut self,
        to: NodeId,
        now: Instant,
        reason: String,
        cause: Cause,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        if self.primary != Some(to) {
            let from = self.primary;
            self.primary = Some(to);
            self.last_primary = Some(to);
            out.push(Transition::Primary {
                from,
                to: Some(to),
                reason,
                cause,
                failover: false,
            });
        }
        self.reconcile(now, &mut out);
        out
    }

    /// The operator's chosen primary as the pair keeps it (made on the peer
    /// gateway, or before a restart): a switchover when `to` can serve
    /// here; otherwise `to` only becomes the preferred node and the role
    /// stays where it is.
    pub fn prefer(&mut self, to: NodeId, now: Instant) -> Vec<Transition> {
        if self.rules.mode != Mode::ActiveStandby {
            return Vec::new();
        }
        self.switchover(to, now).unwrap_or_else(|_| {
            self.rules.preferred = to;
            Vec::new()
        })
    }

    /// Gives the role to `to` because the pair's serving gateway sends its
    /// traffic there, if `to` can serve here. Neither a failover nor a
    /// change of the preferred node.
    pub fn follow(&mut self, to: NodeId, now: Instant, reason: String) -> Vec<Transition> {
        if self.rules.mode != Mode::ActiveStandby
            || self.primary == Some(to)
            || !self.nodes[to].eligible()
        {
            return Vec::new();
        }
        self.hand_role(to, now, reason, Cause::Pair)
    }

    /// Takes new rules (a reloaded configuration). Nodes whose address
    /// changed (`reset`) start over as unknown; the others keep their
    /// health, history and admin state.
    pub fn reconfigure(&mut self, rules: Rules, reset: [bool; 2], now: Instant) -> Vec<Transition> {
        self.rules = rules;
        for (n, r) in reset.into_iter().enumerate() {
            if r {
                let admin = self.nodes[n].admin;
                self.nodes[n] = NodeState::new();
                self.nodes[n].admin = admin;
            }
        }
        if self.rules.mode == Mode::ActiveActive {
            self.primary = None;
        }
        let mut out = Vec::new();
        self.reconcile(now, &mut out);
        out
    }

    /// Lets time pass: flap holds and the failback hold-down expire.
    pub fn tick(&mut self, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        for n in 0..2 {
            let node = &self.nodes[n];
            if node.health == Health::Down && node.held_until.is_some_and(|h| now >= h) {
                self.try_up(n, now, "flap damping hold ended", &mut out);
            }
        }
        self.reconcile(now, &mut out);
        out
    }

    fn try_up(&mut self, n: NodeId, now: Instant, reason: &str, out: &mut Vec<Transition>) {
        let rise = self.rules.rise;
        let node = &mut self.nodes[n];
        let ready = match node.health {
            Health::Up => return,
            Health::Unknown => true,
            Health::Down => node.ok_streak >= rise,
        };
        if !ready {
            return;
        }
        if let Some(until) = node.held_until {
            if now < until {
                if node.ok_streak == rise {
                    out.push(Transition::Damped { node: n, until });
                }
                return;
            }
            node.held_until = None;
        }
        let from = node.health;
        let why = if from == Health::Down {
            format!("{reason} {} times", node.ok_streak)
        } else {
            format!("first {reason}")
        };
        node.health = Health::Up;
        node.last_reason = why.clone();
        node.last_change = Some(now);
        out.push(Transition::Health {
            node: n,
            from,
            to: Health::Up,
            reason: why,
        });
    }

    fn go_down(
        &mut self,
        n: NodeId,
        now: Instant,
        reason: String,
        cause: Cause,
        out: &mut Vec<Transition>,
    ) {
        let flap = self.rules.flap;
        let node = &mut self.nodes[n];
        let from = node.health;
        node.health = Health::Down;
        node.last_reason = reason.clone();
        node.last_cause = cause;
        node.last_change = Some(now);
        if from == Health::Up {
            node.failures.push_back(now);
            while node
                .failures
                .front()
                .is_some_and(|&t| now.duration_since(t) > flap.window)
            {
                node.failures.pop_front();
            }
            let count = node.failures.len() as u32;
            if count >= flap.threshold {
                let doublings = (count - flap.threshold).min(20);
                let hold = flap.hold.saturating_mul(1 << doublings).min(flap.max_hold);
                node.held_until = Some(now + hold);
            }
        }
        out.push(Transition::Health {
            node: n,
            from,
            to: Health::Down,
            reason,
        });
    }

    /// Brings roles in line with health after any change.
    /// Until when the very first choice of a primary waits for the
    /// configured primary: it is on its way up (not checked yet, or it
    /// passed a check of its `rise`) while its twin is eligible already.
    /// Both twins coming up in the same round of checks then always give
    /// the role to the configured primary (and both gateways of a pair
    /// choose alike), whichever check happened to answer first; the twin
    /// serves meanwhile, and takes the role if the wait of two check
    /// intervals passes.
    fn first_choice_deadline(&self) -> Option<Instant> {
        if self.rules.mode != Mode::ActiveStandby
            || self.primary.is_some()
            || self.last_primary.is_some()
        {
            return None;
        }
        let p = &self.nodes[self.rules.preferred];
        let coming_up = !p.eligible()
            && match p.health {
                Health::Unknown => true,
                Health::Down => p.ok_streak > 0 && p.held_until.is_none(),
                Health::Up => false,
            };
        let twin_since = self.nodes[twin(self.rules.preferred)].eligible_since;
        // Two intervals: the twins' checks run on their own timers, up to an
        // interval apart, and an answer may take most of another.
        twin_since
            .filter(|_| coming_up)
            .map(|s| s + 2 * self.rules.interval)
    }

    fn reconcile(&mut self, now: Instant, out: &mut Vec<Transition>) {
        let eligible = [self.nodes[0].eligible(), self.nodes[1].eligible()];
        for (n, node) in self.nodes.iter_mut().enumerate() {
            if !eligible[n] {
                if node.eligible_since.take().is_some()
                    && self.rules.mode == Mode::ActiveActive
                    && eligible[twin(n)]
                {
                    let (reason, cause) = node_reason(node);
                    out.push(Transition::ActiveLost {
                        node: n,
                        reason,
                        cause,
                    });
                }
            } else if node.eligible_since.is_none() {
                node.eligible_since = Some(now);
            }
        }
        if self.rules.mode != Mode::ActiveStandby {
            return;
        }
        let preferred = self.rules.preferred;
        let next = match self.primary {
            Some(p) if eligible[p] => {
                let back = self.rules.preempt
                    && p != preferred
                    && eligible[preferred]
                    && self.nodes[preferred]
                        .eligible_since
                        .is_some_and(|s| now.duration_since(s) >= self.rules.hold_down);
                if back {
                    let reason = format!(
                        "failback: the configured primary was healthy for the hold-down of {}",
                        humantime::format_duration(self.rules.hold_down)
                    );
                    Some((Some(preferred), reason, Cause::Failback))
                } else {
                    None
                }
            }
            current => {
                let wait_first = self.first_choice_deadline().is_some_and(|t| now < t);
                let pick = if eligible[preferred] && current.is_none_or(|c| c != preferred) {
                    Some(preferred)
                } else if let Some(c) = current {
                    eligible[twin(c)].then_some(twin(c))
                } else if wait_first {
                    None
                } else {
                    eligible[twin(preferred)].then_some(twin(preferred))
                };
                match (current, pick) {
                    (_, Some(to)) => {
                        let (reason, cause) = match current.or(self.last_primary) {
                            Some(c) if c != to => {
                                let (why, cause) = node_reason(&self.nodes[c]);
                                (format!("the previous primary lost the role: {why}"), cause)
                            }
                            Some(_) => ("the only node that can serve".to_string(), Cause::Initial),
                            None => ("initial choice".to_string(), Cause::Initial),
                        };
                        Some((Some(to), reason, cause))
                    }
                    (Some(c), None) => {
                        let (why, cause) = node_reason(&self.nodes[c]);
                        Some((
                            None,
                            format!("no node can serve; the primary: {why}"),
                            cause,
                        ))
                    }
                    (None, None) => None,
                }
            }
        };
        if let Some((to, reason, cause)) = next {
            let from = self.primary;
            if from == to {
                return;
            }
            let failover = cause.is_failure()
                && to.is_some()
                && self.last_primary.is_some_and(|lp| Some(lp) != to);
            self.primary = to;
            if to.is_some() {
                self.last_primary = to;
            }
            out.push(Transition::Primary {
                from,
                to,
                reason,
                cause,
                failover,
            });
        }
    }
}

/// Why `n` is not eligible, in words and as a cause.
fn node_reason(n: &NodeState) -> (String, Cause) {
    if n.health == Health::Up && n.admin != AdminState::Active {
        (
            format!("operator set {}", n.admin.as_str()),
            Cause::Operator,
        )
    } else if n.health == Health::Up && n.draining {
        ("agent reports draining".into(), Cause::Draining)
    } else if n.health == Health::Up && n.weight_percent == 0 {
        ("agent weight 0".into(), Cause::Draining)
    } else {
        (n.last_reason.clone(), n.last_cause)
    }
}

#[cfg(test)]
mod tests;
