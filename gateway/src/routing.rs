//! The routing snapshot every request reads, lock-free.
//!
//! The controller builds a new [`Snapshot`] whenever health, roles or the
//! configuration change and publishes it with one `ArcSwap::store`. A
//! request does one `load` and picks a node from it; nothing on the request
//! path takes a lock.

use crate::config::{GatewayConfig, Mode};
use crate::failover::NodeId;
use crate::node::NodeRuntime;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Which nodes keep the requests bound to them by session affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bindings {
    /// The node takes requests that carry its affinity: it serves (in
    /// active-standby, as primary), or a soft drain lets its sessions finish.
    pub serves: [bool; 2],
    /// Why not, where it does not (a `twinport_affinity_moved_total` reason).
    pub moved: [&'static str; 2],
}

impl Bindings {
    /// No node takes bound requests (no affinity, or nothing serves).
    pub const NONE: Bindings = Bindings {
        serves: [false; 2],
        moved: ["down"; 2],
    };
}

pub struct Snapshot {
    pub config: Arc<GatewayConfig>,
    pub nodes: [Arc<NodeRuntime>; 2],
    /// Nodes that may take new requests, in retry order (primary first).
    pub order: Vec<NodeId>,
    weights: [u32; 2],
    bindings: Bindings,
    /// Weighted sequence of first choices; empty when no node can serve.
    schedule: Vec<NodeId>,
    cursor: AtomicUsize,
}

impl Snapshot {
    /// `order` lists the eligible nodes, `weights` their effective weights
    /// (used in active-active only).
    pub fn new(
        config: Arc<GatewayConfig>,
        nodes: [Arc<NodeRuntime>; 2],
        order: Vec<NodeId>,
        weights: [u32; 2],
        bindings: Bindings,
    ) -> Self {
        let schedule = match config.mode {
            Mode::ActiveStandby => order.first().copied().into_iter().collect(),
            Mode::ActiveActive => weighted_schedule(&order, weights),
        };
        Snapshot {
            config,
            nodes,
            order,
            weights,
            bindings,
            schedule,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Effective weights (configured weight × agent percent).
    pub fn weights(&self) -> [u32; 2] {
        self.weights
    }

    /// The node for a request's first attempt.
    pub fn pick(&self) -> Option<NodeId> {
        match self.schedule.len() {
            0 => None,
            1 => Some(self.schedule[0]),
            n => Some(self.schedule[self.cursor.fetch_add(1, Ordering::Relaxed) % n]),
        }
    }

    pub fn bindings(&self) -> Bindings {
        self.bindings
    }

    /// The node for the first attempt of a request bound to `node`: that
    /// node if it takes its sessions, else the weighted pick and the reason
    /// the affinity moves.
    pub fn pick_bound(&self, node: NodeId) -> (Option<NodeId>, Option<&'static str>) {
        if self.bindings.serves[node] {
            (Some(node), None)
        } else {
            (self.pick(), Some(self.bindings.moved[node]))
        }
    }

    /// The node for a retry: the first eligible node not tried yet
    /// (`tried` is a bit set of node ids).
    pub fn pick_retry(&self, tried: u8) -> Option<NodeId> {
        self.order.iter().copied().find(|&n| tried & (1 << n) == 0)
    }
}

/// Smooth weighted round robin (as in nginx), unrolled into a fixed cycle
/// so that picking is one atomic increment. Weights are reduced by their
/// greatest common divisor; the cycle is at most 2,000 long.
fn weighted_schedule(order: &[NodeId], weights: [u32; 2]) -> Vec<NodeId> {
    let live: Vec<(NodeId, u64)> = order
        .iter()
        .map(|&n| (n, u64::from(weights[n])))
        .filter(|&(_, w)| w > 0)
        .collect();
    if live.len() <= 1 {
        return live.into_iter().map(|(n, _)| n).collect();
    }
    let g = live.iter().fold(0, |g, &(_, w)| gcd(g, w));
    let mut ws: Vec<(NodeId, u64)> = live.iter().map(|&(n, w)| (n, w / g)).collect();
    let total: u64 = ws.iter().map(|&(_, w)| w).sum();
    if total > 2000 {
        // Keep the ratio to within 0.1 %.
        for w in ws.iter_mut() {
            w.1 = (w.1 * 2000 / total).max(1);
        }
    }
    let total: i64 = ws.iter().map(|&(_, w)| w as i64).sum();
    let mut current = vec![0i64; ws.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &(_, w)) in current.iter_mut().zip(&ws) {
            *c += w as i64;
        }
        let best = (0..ws.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .expect("two nodes");
        current[best] -= total;
        out.push(ws[best].0);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(s: &[NodeId], n: NodeId) -> f64 {
        s.iter().filter(|&&x| x == n).count() as f64 / s.len() as f64
    }

    #[test]
    fn weights_are_honoured_and_interleaved() {
        let s = weighted_schedule(&[0, 1], [300, 100]);
        assert_eq!(s, vec![0, 0, 1, 0]);
        let s = weighted_schedule(&[0, 1], [70, 30]);
        assert_eq!(s.len(), 10);
        assert!((share(&s, 0) - 0.7).abs() < 1e-9);
        // Never two b's in a row when a has more weight.
        assert!(!s.windows(2).any(|w| w == [1, 1]));
        let s = weighted_schedule(&[0, 1], [999, 1000]);
        assert!((share(&s, 0) - 999.0 / 1999.0).abs() < 0.001);
    }

    #[test]
    fn one_node_or_zero_weight() {
        assert_eq!(weighted_schedule(&[1], [100, 100]), vec![1]);
        assert_eq!(weighted_schedule(&[0, 1], [0, 50]), vec![1]);
        assert!(weighted_schedule(&[], [100, 100]).is_empty());
    }
}
