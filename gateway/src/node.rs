//! What the request path knows about one twin node.
//!
//! A [`NodeRuntime`] is built once per configuration and shared by every
//! request: the upstream peer template, the node's metric handles (looked
//! up once, not per request), its passive error counter and the table of
//! upstream connections that are open to it right now.

use crate::config::{GatewayConfig, NodeConfig};
use crate::metrics::{metrics, CODE_CLASSES, PASSIVE_KINDS};
use pingora::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};
use prometheus::{Histogram, IntCounter, IntGauge};
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// The addresses a node's targets resolve to right now (`None`: a host
/// name not resolved yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resolved {
    pub address: Option<SocketAddr>,
    pub agent: Option<SocketAddr>,
}

impl Resolved {
    /// What needs no DNS: the targets that are addresses already.
    pub fn from_config(node: &NodeConfig) -> Self {
        Resolved {
            address: node.address.ip(),
            agent: node.agent.ip(),
        }
    }
}

pub struct NodeRuntime {
    pub index: usize,
    pub name: String,
    /// Where requests go; `None` while its host name is unresolved (the
    /// node then fails its checks and is never picked).
    pub address: Option<SocketAddr>,
    pub agent: Option<SocketAddr>,
    /// Cloned for every attempt; already carries the timeouts.
    pub peer: HttpPeer,
    pub requests: [IntCounter; 5],
    pub duration: Histogram,
    pub inflight: IntGauge,
    /// Consecutive timeouts and 5xx answers seen by the proxy.
    pub soft_failures: AtomicU32,
    /// Shared with the runtime of the same node in the previous
    /// configuration, so a reload does not lose track of open connections.
    pub sessions: Arc<SessionTable>,
}

impl NodeRuntime {
    pub fn new(
        index: usize,
        node: &NodeConfig,
        config: &GatewayConfig,
        sessions: Option<Arc<SessionTable>>,
        resolved: Resolved,
    ) -> Self {
        let m = metrics();
        let target = resolved
            .address
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], node.address.port())));
        let mut peer = HttpPeer::new(target, false, String::new());
        let t = &config.timeouts;
        peer.options.connection_timeout = Some(t.connect);
        peer.options.total_connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.read);
        peer.options.write_timeout = Some(t.write);
        peer.options.idle_timeout = Some(t.upstream_idle);
        // Pingora removes the hop-by-hop fields, those the client names in
        // `Connection` and any upgrade but WebSocket's before our request
        // hooks run (`clients::prepare_upstream_request` counts on it).
        peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::standard();
        let name = node.name.as_str();
        for kind in PASSIVE_KINDS {
            m.passive_failures.with_label_values(&[name, kind]);
        }
        m.sessions_cut.with_label_values(&[name]);
        m.affinity_sessions.with_label_values(&[name]);
        NodeRuntime {
            index,
            name: node.name.clone(),
            address: resolved.address,
            agent: resolved.agent,
            peer,
            requests: CODE_CLASSES.map(|c| m.requests.with_label_values(&[name, c])),
            duration: m.request_duration.with_label_values(&[name]),
            inflight: m.inflight.with_label_values(&[name]),
            soft_failures: AtomicU32::new(0),
            sessions: sessions.unwrap_or_default(),
        }
    }
}

/// Upstream connections in use by requests to one node, so that they can be
/// cut the moment the node is declared down (HAProxy's
/// `on-marked-down shutdown-sessions`). A request waiting on a hung node
/// then fails at once and, if idempotent, is retried on the twin instead of
/// waiting for its read timeout.
///
/// Lock-free: a fixed array of file descriptors claimed with a CAS. A
/// request that finds no free slot simply cannot be cut early and falls
/// back to its timeout. Before cutting, the socket's peer address is
/// checked, so a descriptor number that was closed and reused by another
/// connection is never touched unless it, too, leads to the dead node.
pub struct SessionTable {
    slots: Box<[AtomicI32]>,
    hint: AtomicUsize,
}

const EMPTY: i32 = -1;
const SLOTS: usize = 4096;
/// How many slots a registration probes before giving up.
const PROBE: usize = 64;

impl SessionTable {
    pub fn new() -> Self {
        SessionTable {
            slots: (0..SLOTS).map(|_| AtomicI32::new(EMPTY)).collect(),
            hint: AtomicUsize::new(0),
        }
    }

    /// Records `fd` as in use; returns the slot to release, if one was free.
    pub fn register(&self, fd: RawFd) -> Option<usize> {
        let start = self.hint.fetch_add(1, Ordering::Relaxed);
        (0..PROBE).map(|i| (start + i) % SLOTS).find(|&i| {
            self.slots[i]
                .compare_exchange(EMPTY, fd, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }

    pub fn release(&self, slot: usize) {
        self.slots[slot].store(EMPTY, Ordering::Release);
    }

    /// Shuts down every registered connection whose peer is `peer`.
    /// Returns how many were cut.
    pub fn cut_all(&self, peer: SocketAddr) -> usize {
        use nix::sys::socket::{getpeername, shutdown, Shutdown, SockaddrStorage};
        let mut cut = 0;
        for slot in self.slots.iter() {
            let fd = slot.load(Ordering::Acquire);
            if fd == EMPTY {
                continue;
            }
            let same_peer = getpeername::<SockaddrStorage>(fd)
                .ok()
                .and_then(|a| to_socket_addr(&a))
                .is_some_and(|a| a == peer);
            if same_peer && shutdown(fd, Shutdown::Both).is_ok() {
                cut += 1;
            }
        }
        cut
    }

    /// Registered connections (for tests and status).
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != EMPTY)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for SessionTable {
    fn default() -> Self {
        Self::new()
    }
}

fn to_socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::io::AsRawFd;

    #[test]
    fn cut_wakes_a_blocked_reader_and_spares_other_peers() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let alive = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut to_dead = TcpStream::connect(dead.local_addr().unwrap()).unwrap();
        let to_alive = TcpStream::connect(alive.local_addr().unwrap()).unwrap();
        let table = SessionTable::new();
        let s1 = table.register(to_dead.as_raw_fd()).unwrap();
        let s2 = table.register(to_alive.as_raw_fd()).unwrap();
        assert_eq!(table.len(), 2);

        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            // Blocks until the cut: the dead node never writes.
            to_dead.read(&mut buf)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(table.cut_all(dead.local_addr().unwrap()), 1);
        let n = reader.join().unwrap().unwrap();
        assert_eq!(n, 0, "the read ends with EOF");

        // The other connection still works.
        let (mut server_side, _) = alive.accept().unwrap();
        std::io::Write::write_all(&mut server_side, b"x").unwrap();
        let mut buf = [0u8; 1];
        (&to_alive).read_exact(&mut buf).unwrap();
        table.release(s1);
        table.release(s2);
        assert!(table.is_empty());
    }

    #[test]
    fn a_full_table_refuses_registration_instead_of_blocking() {
        let table = SessionTable::new();
        let mut taken = 0;
        while table.register(1000).is_some() {
            taken += 1;
            assert!(taken <= SLOTS);
        }
        assert_eq!(taken, SLOTS);
    }
}
