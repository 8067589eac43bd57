//! The operator's decisions in the controller: made here through the admin
//! API, restored from the state file at start, or learned from the peer
//! gateway (see [`crate::pair`]).

use super::Controller;
use crate::failover::{AdminState, NodeId};
use crate::metrics::metrics;
use crate::pair::{Exchange, OperatorState, Vrrp, PRIMARY_KEY};
use crate::status::timestamp;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;
use tracing::{info, warn};

/// How a node's operator state is written in the pair's state.
pub(super) fn admin_value(state: AdminState, soft: bool) -> &'static str {
    match (state, soft) {
        (AdminState::Drain, true) => "soft-drain",
        (s, _) => s.as_str(),
    }
}

fn parse_admin(value: &str) -> Option<(AdminState, bool)> {
    Some(match value {
        "active" => (AdminState::Active, false),
        "drain" => (AdminState::Drain, false),
        "soft-drain" => (AdminState::Drain, true),
        "maintenance" => (AdminState::Maintenance, false),
        _ => return None,
    })
}

impl Controller {
    /// This gateway's name in the pair (`gateway` without a pair).
    fn origin(&self) -> String {
        self.config
            .pair
            .as_ref()
            .map_or_else(|| "gateway".to_string(), |p| p.name.clone())
    }

    pub fn shared(&self) -> &super::Shared {
        &self.shared
    }

    /// What this gateway (`name` in the pair) would send its peer now.
    pub fn exchange(&self, name: &str) -> Exchange {
        self.shared.exchange_of(name)
    }

    /// An operator's drain (`soft`: sessions finish first), undrain or
    /// maintenance of `node`, however it reached this gateway.
    pub(super) fn set_admin(&mut self, node: NodeId, state: AdminState, soft: bool, now: Instant) {
        let was = self.cluster.node(node).admin;
        let t = self.cluster.set_admin(node, state, now);
        if state == AdminState::Drain && soft {
            // A node drained already keeps the drain it has.
            if was != AdminState::Drain {
                self.start_soft_drain(node, "operator", now);
            }
        } else {
            self.soft[node] = None;
        }
        self.after(t, false);
    }

    /// An operator's weight for `node` (`None`: the configured one).
    pub(super) fn set_weight(&mut self, node: NodeId, weight: Option<u32>) {
        if self.weights[node] != weight {
            self.weights[node] = weight;
            let show =
                |w: Option<u32>| w.map_or_else(|| "configured".to_string(), |w| w.to_string());
            info!(node = %self.name(node), weight = %show(weight), "operator changed the node's weight");
            self.record(
                timestamp(SystemTime::now()),
                Some(node),
                format!("weight {}", show(weight)),
                "operator".into(),
            );
            self.after(Vec::new(), false);
        }
    }

    /// Records a decision made on this gateway and hands it to the state
    /// file and the peer.
    pub(super) fn operator_decided(&mut self, key: &str, value: &str) {
        let origin = self.origin();
        self.ops.set(key, value, &origin);
        self.ops_tx.send_replace(Arc::new(self.ops.clone()));
    }

    /// Puts the state kept before a restart in force: the nodes' operator
    /// states now, before the first checks (a drained node never gets a
    /// request); the chosen primary once the nodes' health is known
    /// ([`Controller::restore_primary`]).
    pub fn restore(&mut self, kept: &OperatorState, now: Instant) {
        let changed = self.ops.merge(kept);
        self.apply_keys(&changed, false, now);
        self.ops_tx.send_replace(Arc::new(self.ops.clone()));
    }

    /// The operator's chosen primary, once the first checks are done.
    pub fn restore_primary(&mut self, now: Instant) {
        self.apply_keys(&[PRIMARY_KEY.to_string()], true, now);
    }

    /// Merges the peer's side of an exchange and applies what changed;
    /// where due, takes the primary the peer serves with.
    pub(super) fn merge_peer(&mut self, theirs: &Exchange, now: Instant) {
        let changed = self.ops.merge(&theirs.state);
        if !changed.is_empty() {
            metrics().pair_changes_applied.inc_by(changed.len() as u64);
            for key in &changed {
                if let Some(e) = self.ops.entries.get(key) {
                    info!(peer = %theirs.from, %key, value = %e.value, origin = %e.origin, "operator change applied from the peer gateway");
                }
            }
            self.apply_keys(&changed, true, now);
            self.ops_tx.send_replace(Arc::new(self.ops.clone()));
        }
        // The serving gateway decides which twin is primary: this one
        // follows it while it does not hold the virtual IP itself.
        if theirs.vrrp == Vrrp::Master && self.shared.pair.vrrp() != Vrrp::Master {
            self.follow(theirs, now);
        }
    }

    /// Takes the primary `theirs` serves with, if it can serve here (a
    /// gateway that starts follows its peer, so a move of the VIP does not
    /// move the role).
    pub fn follow(&mut self, theirs: &Exchange, now: Instant) {
        let Some(name) = &theirs.primary else { return };
        let Some(to) = self.config.nodes.iter().position(|n| &n.name == name) else {
            return;
        };
        let reason = format!(
            "the peer gateway {} ({}) serves with it",
            theirs.from,
            theirs.vrrp.as_str()
        );
        let t = self.cluster.follow(to, now, reason);
        self.after(t, false);
    }

    fn apply_keys(&mut self, keys: &[String], primary: bool, now: Instant) {
        for key in keys {
            let Some(value) = self.ops.get(key).map(str::to_string) else {
                continue;
            };
            if key == PRIMARY_KEY {
                if !primary {
                    continue;
                }
                match self.node_named(&value) {
                    Some(n) => {
                        let t = self.cluster.prefer(n, now);
                        self.after(t, false);
                    }
                    None => {
                        warn!(node = %value, "the operator's primary names no configured node; ignored")
                    }
                }
            } else if let Some(name) = key.strip_prefix("weight/") {
                let weight = match value.as_str() {
                    "config" => Some(None),
                    w => w
                        .parse::<u32>()
                        .ok()
                        .filter(|w| (1..=1000).contains(w))
                        .map(Some),
                };
                match (self.node_named(name), weight) {
                    (Some(n), Some(w)) => self.set_weight(n, w),
                    _ => {
                        warn!(%key, %value, "operator weight for no configured node, or not 1-1000; ignored")
                    }
                }
            } else if let Some(name) = key.strip_prefix("node/") {
                match (self.node_named(name), parse_admin(&value)) {
                    (Some(n), Some((state, soft))) => self.set_admin(n, state, soft, now),
                    _ => {
                        warn!(%key, %value, "operator state for no configured node, or of no known kind; ignored")
                    }
                }
            }
        }
    }

    fn node_named(&self, name: &str) -> Option<NodeId> {
        self.config.nodes.iter().position(|n| n.name == name)
    }

    /// After a reload the configured primary is the preferred node again,
    /// unless an operator chose another: that choice stays in force on
    /// both gateways.
    pub(super) fn keep_operator_primary(&mut self, now: Instant) {
        if self.ops.get(PRIMARY_KEY).is_some() {
            self.restore_primary(now);
        }
    }

    pub(super) fn vrrp_changed(&mut self, state: Vrrp) {
        // Kept beside the operator state: a binary upgrade's new process
        // hears nothing from keepalived (nothing changed) and must still
        // know what it is.
        if let Some(path) = &self.config.server.state_file {
            let path = crate::pair::vrrp_file(path);
            if let Err(e) = std::fs::write(&path, state.as_str()) {
                warn!(file = %path.display(), error = %e, "cannot keep the VRRP state");
            }
        }
        info!(
            vrrp = state.as_str(),
            "keepalived: this gateway is now {}",
            state.as_str()
        );
        self.record(
            timestamp(SystemTime::now()),
            None,
            format!("VRRP {}", state.as_str()),
            match state {
                Vrrp::Master => "this gateway holds the virtual IP".into(),
                Vrrp::Backup => "the peer gateway holds the virtual IP".into(),
                _ => "this gateway does not hold the virtual IP".into(),
            },
        );
        if state == Vrrp::Master {
            // Taking the address: compare with the peer at once (if it is
            // still there) rather than at the next sync.
            self.ops_tx.send_replace(Arc::new(self.ops.clone()));
        }
        self.publish_status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::Observation;
    use crate::health::CheckOutcome;

    /// A controller whose configured primary is `primary`, both nodes up.
    fn controller(primary: &str) -> Controller {
        let yaml = format!(
            "listeners:\n  http: 127.0.0.1:1\nprimary: {primary}\nnodes:\n  - name: a\n    address: 127.0.0.1:2\n  - name: b\n    address: 127.0.0.1:3\n"
        );
        let config = crate::config::parse(std::path::Path::new("t.yaml"), &yaml).unwrap();
        let (mut c, _, _) = Controller::new(Arc::new(config), "t.yaml".into(), None);
        let now = Instant::now();
        for node in 0..2 {
            c.apply(
                super::super::Event::Check {
                    node,
                    outcome: CheckOutcome {
                        observation: Observation::CheckPassed {
                            weight_percent: 100,
                        },
                        result: "ok",
                        agent_state: Some("ready".into()),
                        version: None,
                    },
                },
                now,
            );
        }
        c
    }

    fn peer(primary: &str, vrrp: Vrrp, state: OperatorState) -> Exchange {
        Exchange {
            from: "gw1".into(),
            state,
            primary: Some(primary.into()),
            vrrp,
        }
    }

    #[test]
    fn the_backup_follows_the_masters_primary_and_the_master_does_not() {
        let mut c = controller("b");
        assert_eq!(c.cluster.primary(), Some(1));
        c.shared.pair.set_vrrp(Vrrp::Backup);
        c.merge_peer(
            &peer("a", Vrrp::Master, OperatorState::default()),
            Instant::now(),
        );
        assert_eq!(c.cluster.primary(), Some(0), "the BACKUP follows");
        assert_eq!(c.cluster.rules().preferred, 1, "its preferred node stays");

        let mut c = controller("b");
        c.shared.pair.set_vrrp(Vrrp::Master);
        c.merge_peer(
            &peer("a", Vrrp::Backup, OperatorState::default()),
            Instant::now(),
        );
        assert_eq!(c.cluster.primary(), Some(1), "the MASTER decides");
        c.shared.pair.set_vrrp(Vrrp::Unknown);
    }

    #[test]
    fn the_peers_decisions_apply_and_ours_are_stamped_with_our_name() {
        let mut c = controller("a");
        let mut theirs = OperatorState::default();
        theirs.set("node/a", "drain", "gw1");
        c.merge_peer(&peer("a", Vrrp::Unknown, theirs.clone()), Instant::now());
        assert_eq!(c.cluster.node(0).admin, AdminState::Drain);
        assert_eq!(c.cluster.primary(), Some(1), "a drained primary hands over");
        assert_eq!(
            **c.ops_tx.borrow(),
            theirs,
            "published for the file and the peer"
        );

        // A newer decision here wins over the peer's older one.
        c.set_admin(0, AdminState::Active, false, Instant::now());
        c.operator_decided("node/a", "active");
        c.merge_peer(&peer("b", Vrrp::Unknown, theirs), Instant::now());
        assert_eq!(c.cluster.node(0).admin, AdminState::Active);
        let e = &c.ops.entries["node/a"];
        assert_eq!(
            (e.value.as_str(), e.version, e.origin.as_str()),
            ("active", 2, "gateway")
        );

        // The operator's primary: a switchover where the node can serve.
        let mut theirs = OperatorState::default();
        theirs.set("primary", "b", "gw1");
        theirs.set("primary", "b", "gw1");
        let mut c = controller("a");
        c.merge_peer(&peer("a", Vrrp::Unknown, theirs), Instant::now());
        assert_eq!(c.cluster.primary(), Some(1));
        assert_eq!(c.cluster.rules().preferred, 1);
    }

    #[test]
    fn restored_states_apply_before_the_first_check_and_the_primary_after() {
        let yaml = "listeners:\n  http: 127.0.0.1:1\nnodes:\n  - name: a\n    address: 127.0.0.1:2\n  - name: b\n    address: 127.0.0.1:3\n";
        let config = crate::config::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
        let (mut c, _, _) = Controller::new(Arc::new(config), "t.yaml".into(), None);
        let mut kept = OperatorState::default();
        kept.set("node/b", "maintenance", "gw1");
        kept.set("node/c", "drain", "gw1");
        kept.set("primary", "b", "gw1");
        c.restore(&kept, Instant::now());
        assert_eq!(c.cluster.node(1).admin, AdminState::Maintenance);
        assert_eq!(
            c.cluster.rules().preferred,
            0,
            "the primary waits for the checks"
        );
        c.restore_primary(Instant::now());
        assert_eq!(
            c.cluster.rules().preferred,
            1,
            "b cannot serve: preferred only"
        );
    }
}
