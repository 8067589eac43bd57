//! Node host names, resolved with hickory and re-resolved on their TTL.
//!
//! A node's `address` or `agent` may be `host:port`. The resolver task
//! looks each host name up, keeps the answer until its TTL runs out
//! (clamped to `dns.min_ttl ..= dns.max_ttl`), and reports a node whose
//! addresses changed to the controller, which rebuilds that node's upstream
//! and checks it anew. A failed lookup keeps the last good address, is
//! logged and counted in `twinport_dns_resolutions_total{result="failed"}`,
//! and is retried after `dns.min_ttl`. Settings and host names are read from
//! the configuration in force before every round, so a reload takes effect
//! within a second.

use crate::config::{Dns, GatewayConfig, Target};
use crate::controller::Shared;
use crate::metrics::metrics;
use crate::node::Resolved;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

/// Whether any node is given by host name (else there is nothing to resolve).
pub fn has_hosts(config: &GatewayConfig) -> bool {
    config
        .nodes
        .iter()
        .any(|n| matches!(n.address, Target::Host { .. }) || matches!(n.agent, Target::Host { .. }))
}

/// Builds a resolver for `dns`: its servers, or the system's.
pub fn resolver(dns: &Dns) -> TokioResolver {
    let (config, mut opts) = if dns.servers.is_empty() {
        hickory_resolver::system_conf::read_system_conf()
            .unwrap_or_else(|_| (ResolverConfig::default(), ResolverOpts::default()))
    } else {
        let mut group = NameServerConfigGroup::new();
        for s in &dns.servers {
            group.merge(NameServerConfigGroup::from_ips_clear(
                &[s.ip()],
                s.port(),
                true,
            ));
        }
        (
            ResolverConfig::from_parts(None, vec![], group),
            ResolverOpts::default(),
        )
    };
    opts.timeout = dns.timeout;
    opts.attempts = 2;
    // We schedule re-resolution on the TTL ourselves; a cache would only
    // hide a change.
    opts.cache_size = 0;
    TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build()
}

/// One host name's last good answer.
#[derive(Debug, Clone)]
struct Entry {
    ip: Option<IpAddr>,
    due: Instant,
}

/// Looks `host` up; keeps `previous` if it is still among the answers, so
/// several A records do not make the node flap between them.
async fn lookup(
    r: &TokioResolver,
    host: &str,
    previous: Option<IpAddr>,
    dns: &Dns,
) -> Result<(IpAddr, Duration), String> {
    let fqdn = format!("{host}.");
    let answer = r
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let ips: Vec<IpAddr> = answer.iter().collect();
    let ip = previous
        .filter(|p| ips.contains(p))
        .or_else(|| ips.iter().copied().find(IpAddr::is_ipv4))
        .or_else(|| ips.first().copied())
        .ok_or_else(|| "no address in the answer".to_string())?;
    let ttl = answer
        .valid_until()
        .saturating_duration_since(std::time::Instant::now())
        .clamp(dns.min_ttl, dns.max_ttl);
    Ok((ip, ttl))
}

/// The resolver's memory of every host name it has seen.
#[derive(Default)]
pub struct Cache {
    entries: HashMap<String, Entry>,
}

impl Cache {
    /// Resolves every host name of `config` that is due, and returns the
    /// nodes' addresses as they now stand.
    pub async fn refresh(&mut self, r: &TokioResolver, config: &GatewayConfig) -> [Resolved; 2] {
        let now = Instant::now();
        for node in config.nodes.iter() {
            for t in [&node.address, &node.agent] {
                let Target::Host { name, .. } = t else {
                    continue;
                };
                let entry = self.entries.get(name).cloned();
                if entry.as_ref().is_some_and(|e| e.due > now) {
                    continue;
                }
                let previous = entry.as_ref().and_then(|e| e.ip);
                let (ip, due) = match lookup(r, name, previous, &config.dns).await {
                    Ok((ip, ttl)) => {
                        metrics()
                            .dns_resolutions
                            .with_label_values(&[node.name.as_str(), "ok"])
                            .inc();
                        if previous.is_some_and(|p| p != ip) {
                            info!(node = %node.name, host = %name, %ip, "host name resolves to a new address");
                        }
                        (Some(ip), now + ttl)
                    }
                    Err(e) => {
                        metrics()
                            .dns_resolutions
                            .with_label_values(&[node.name.as_str(), "failed"])
                            .inc();
                        warn!(node = %node.name, host = %name, error = %e, last = ?previous, "cannot resolve the node's host name; keeping the last good address");
                        (previous, now + config.dns.min_ttl)
                    }
                };
                self.entries.insert(name.clone(), Entry { ip, due });
            }
        }
        [0, 1].map(|n| self.resolve_node(config, n))
    }

    fn resolve_node(&self, config: &GatewayConfig, n: usize) -> Resolved {
        let at = |t: &Target| match t {
            Target::Ip(a) => Some(*a),
            Target::Host { name, port } => self
                .entries
                .get(name)
                .and_then(|e| e.ip)
                .map(|ip| SocketAddr::new(ip, *port)),
        };
        Resolved {
            address: at(&config.nodes[n].address),
            agent: at(&config.nodes[n].agent),
        }
    }

    /// When the next host name is due (at most a second away, so that a
    /// reloaded configuration is looked at soon).
    fn next_due(&self) -> Instant {
        let soon = Instant::now() + Duration::from_secs(1);
        self.entries
            .values()
            .map(|e| e.due)
            .min()
            .map_or(soon, |d| d.min(soon))
    }
}

/// Resolves the host names of the configuration in force until `shutdown`,
/// reporting every change to the controller.
pub async fn run(
    shared: Arc<Shared>,
    mut cache: Cache,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut settings: Option<(Dns, TokioResolver)> = None;
    loop {
        let snap = shared.snapshot.load_full();
        let config = &snap.config;
        if has_hosts(config) {
            if settings.as_ref().is_none_or(|(d, _)| *d != config.dns) {
                settings = Some((config.dns.clone(), resolver(&config.dns)));
            }
            let (_, r) = settings.as_ref().expect("set above");
            let now = cache.refresh(r, config).await;
            for (n, resolved) in now.into_iter().enumerate() {
                if snap.nodes[n].address != resolved.address
                    || snap.nodes[n].agent != resolved.agent
                {
                    shared.resolved(n, resolved);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(cache.next_due()) => {}
            _ = shutdown.changed() => return,
        }
    }
}
