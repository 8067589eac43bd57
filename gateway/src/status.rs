//! What `GET /v1/status` and the status page show.
//!
//! The controller rebuilds a [`Status`] after every change and publishes it
//! through an `ArcSwap`; the admin API adds the live in-flight counts when
//! it answers.

use serde::Serialize;
use std::collections::VecDeque;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub mode: &'static str,
    pub affinity: AffinityStatus,
    /// Name of the current primary (active-standby), if any node can serve.
    pub primary: Option<String>,
    pub config_generation: u64,
    pub config_file: String,
    pub nodes: Vec<NodeStatus>,
    /// Most recent first.
    pub transitions: Vec<TransitionRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    pub agent: String,
    /// `unknown`, `up` or `down`.
    pub health: &'static str,
    /// The node's state as the gateway sees it (`ready`, `draining`, ...).
    pub state: &'static str,
    /// The operator's state: `active`, `drain` or `maintenance`.
    pub admin: &'static str,
    pub role: &'static str,
    pub eligible: bool,
    pub weight: u32,
    /// An operator's weight over the configured one, if any.
    pub operator_weight: Option<u32>,
    /// (Operator's or configured) weight × the agent's percentage.
    pub effective_weight: u32,
    pub inflight: i64,
    /// Requests answered by the node since start, by status class.
    pub requests: std::collections::BTreeMap<&'static str, u64>,
    pub version: Option<String>,
    pub last_check: Option<CheckRecord>,
    pub last_transition: Option<TransitionRecord>,
    /// Results of the last checks, oldest first (`ok`, `draining`,
    /// `failed`, `timeout`, `error`).
    pub history: Vec<&'static str>,
    /// Distinct sessions bound to the node, seen within
    /// `affinity.idle_timeout` (0 without affinity).
    pub sessions: u64,
    /// A soft drain in progress: the node takes no new sessions but still
    /// serves its own until they stop coming or `until`.
    pub soft_drain: Option<SoftDrainStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoftDrainStatus {
    /// `operator` (`twinctl drain --soft`) or `agent` (the node reports
    /// draining).
    pub by: &'static str,
    /// When it turns into a hard drain at the latest.
    pub until: String,
}

/// Session affinity as configured, and what it means in this mode.
#[derive(Debug, Clone, Serialize)]
pub struct AffinityStatus {
    /// `none`, `cookie` or `app-cookie`.
    pub mode: &'static str,
    /// The cookie followed (`None` without affinity).
    pub cookie: Option<String>,
    pub idle_timeout_s: u64,
    pub drain_timeout_s: u64,
    /// One sentence on what the operator should expect.
    pub note: &'static str,
}

impl AffinityStatus {
    pub fn of(c: &crate::config::GatewayConfig) -> Self {
        use crate::config::Mode;
        let a = &c.affinity;
        let note = match (a.enabled(), c.mode) {
            (false, _) => "off: every request goes by mode and weight",
            (true, Mode::ActiveActive) => {
                "sessions stay on their node; new ones go by weight; a node that fails moves its sessions to the twin once"
            }
            (true, Mode::ActiveStandby) => {
                "active-standby: sessions follow the primary, so a switchover moves every session to the new primary; a soft drain lets them finish first"
            }
        };
        AffinityStatus {
            mode: a.mode.as_str(),
            cookie: a.enabled().then(|| a.cookie.clone()),
            idle_timeout_s: a.idle_timeout.as_secs(),
            drain_timeout_s: a.drain_timeout.as_secs(),
            note,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckRecord {
    pub at: String,
    pub result: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransitionRecord {
    pub at: String,
    pub node: Option<String>,
    pub event: String,
    pub reason: String,
}

pub use twinport_ops::timestamp;

/// A bounded log of recent records, newest first.
#[derive(Debug, Clone)]
pub struct Recent<T> {
    items: VecDeque<T>,
    cap: usize,
}

impl<T: Clone> Recent<T> {
    pub fn new(cap: usize) -> Self {
        Recent {
            items: VecDeque::with_capacity(cap),
            cap,
        }
    }

    pub fn push(&mut self, t: T) {
        if self.items.len() == self.cap {
            self.items.pop_back();
        }
        self.items.push_front(t);
    }

    pub fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }

    pub fn first(&self) -> Option<&T> {
        self.items.front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_keeps_the_newest_first_and_is_bounded() {
        let mut r = Recent::new(3);
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.to_vec(), vec![4, 3, 2]);
        assert_eq!(r.first(), Some(&4));
    }
}
