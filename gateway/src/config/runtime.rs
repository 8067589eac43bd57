//! Validated configuration, the only form the rest of the gateway reads.

use super::file::*;
use super::FieldError;
use crate::tls::{self, CertifiedKey};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use twinport_ops::config::{resolve, Errors};
use twinport_ops::token::read_token;

/// How traffic is spread over the twins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// All traffic to the primary; the standby is only health-checked and
    /// takes over when the primary fails.
    ActiveStandby,
    /// Both nodes serve, split by weight.
    ActiveActive,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ActiveStandby => "active-standby",
            Mode::ActiveActive => "active-active",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listeners: Listeners,
    pub mode: Mode,
    /// Index into `nodes` of the configured (preferred) primary.
    pub primary: usize,
    pub nodes: [NodeConfig; 2],
    pub health: HealthCheck,
    pub passive: Passive,
    pub failback: Failback,
    pub flap: FlapDamping,
    pub timeouts: Timeouts,
    pub retries: Retries,
    pub unavailable: Unavailable,
    pub server: ServerSettings,
    pub admin: Option<Admin>,
    pub watch_config: bool,
    pub dns: Dns,
    pub clients: Clients,
    pub affinity: Affinity,
    pub pair: Option<Pair>,
}

/// How requests are kept on one twin (see [`crate::affinity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffinityMode {
    /// Every request goes by mode and weight.
    None,
    /// The gateway inserts a signed cookie naming the node.
    Cookie,
    /// The gateway follows the application's session cookie.
    AppCookie,
}

impl AffinityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityMode::None => "none",
            AffinityMode::Cookie => "cookie",
            AffinityMode::AppCookie => "app-cookie",
        }
    }
}

/// Session affinity, validated.
#[derive(Clone)]
pub struct Affinity {
    pub mode: AffinityMode,
    /// The cookie followed: the gateway's (`cookie`) or the application's
    /// (`app-cookie`).
    pub cookie: String,
    /// Signs and checks the gateway's cookie (`cookie` mode).
    pub codec: Option<Arc<crate::affinity::CookieCodec>>,
    pub max_age: Duration,
    pub idle_timeout: Duration,
    pub max_entries: u32,
    pub drain_timeout: Duration,
}

impl Affinity {
    pub fn enabled(&self) -> bool {
        self.mode != AffinityMode::None
    }
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Affinity")
            .field("mode", &self.mode)
            .field("cookie", &self.cookie)
            .field("max_age", &self.max_age)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_entries", &self.max_entries)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Affinity {
    fn default() -> Self {
        Affinity {
            mode: AffinityMode::None,
            cookie: String::new(),
            codec: None,
            max_age: Duration::from_secs(8 * 3600),
            idle_timeout: Duration::from_secs(30 * 60),
            max_entries: 100_000,
            drain_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// What the gateway does about its clients (see [`crate::clients`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clients {
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Requests per second per client address; 0: no limit.
    pub rate_limit: u32,
    pub max_body_bytes: u64,
    pub max_header_bytes: u64,
    /// 0: no HSTS header.
    pub hsts_max_age: Duration,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            trusted_proxies: Vec::new(),
            rate_limit: 0,
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            hsts_max_age: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Listeners {
    pub http: Option<SocketAddr>,
    pub https: Option<HttpsListener>,
    pub metrics: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

impl Listeners {
    /// Listener addresses by field, to tell what a reload cannot change.
    pub fn addresses(&self) -> [(&'static str, Option<SocketAddr>); 4] {
        [
            ("listeners.http", self.http),
            (
                "listeners.https.address",
                self.https.as_ref().map(|h| h.address),
            ),
            ("listeners.metrics", self.metrics),
            ("listeners.admin", self.admin),
        ]
    }
}

/// The admin API's secrets and audit trail.
#[derive(Clone)]
pub struct Admin {
    pub token_file: PathBuf,
    /// The bearer token, read from `token_file` when the file was loaded.
    pub token: Arc<[u8]>,
    /// A token that may only read (`GET`), from `read_token_file`.
    pub read_token: Option<Arc<[u8]>>,
    pub audit_log: PathBuf,
    /// The admin listener's TLS (and client verification), if any.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether the TLS asks every client for a certificate of `client_ca`.
    pub mutual_tls: bool,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("token_file", &self.token_file)
            .field("token", &"<redacted>")
            .field("audit_log", &self.audit_log)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct HttpsListener {
    pub address: SocketAddr,
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The loaded and checked key pair.
    pub cert: Arc<CertifiedKey>,
    pub http2: bool,
    /// The HTTP/2 stream flow-control window (the connection's is 4×).
    pub http2_window: u32,
    pub resumption: tls::Resumption,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    pub address: Target,
    pub agent: Target,
    pub weight: u32,
}

/// Where a node's application or agent is: an address, or a host name
/// that DNS resolves (see `crate::dns`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Ip(SocketAddr),
    Host { name: String, port: u16 },
}

impl Target {
    /// The address, when it needs no resolution.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Target::Ip(a) => Some(*a),
            Target::Host { .. } => None,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Target::Ip(a) => a.port(),
            Target::Host { port, .. } => *port,
        }
    }

    fn parse(s: &str) -> Option<Target> {
        if let Ok(a) = s.parse() {
            return Some(Target::Ip(a));
        }
        let (host, port) = s.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = host.trim_end_matches('.');
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(label_ok)
            && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        (valid && port != 0).then(|| Target::Host {
            name: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Ip(a) => write!(f, "{a}"),
            Target::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// How host names of nodes are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Empty: the system's resolver configuration.
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub shutdown_sessions_on_down: bool,
}

impl HealthCheck {
    /// Longest time from a node hanging to it being declared down by the
    /// active checks (see [`crate::health::detection_bound`]).
    pub fn detection_bound(&self) -> Duration {
        crate::health::detection_bound(self.interval, self.timeout, self.fall)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passive {
    /// Consecutive timeouts or 5xx answers that eject a node; 0 = never.
    pub error_limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failback {
    pub preempt: bool,
    pub hold_down: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapDamping {
    pub window: Duration,
    pub threshold: u32,
    pub hold: Duration,
    pub max_hold: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub upstream_idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    pub max_attempts: u32,
    pub idempotent: bool,
    /// A request with an `Idempotency-Key` header counts as idempotent.
    pub idempotency_key: bool,
}

/// The most attempts a request can get (pingora's `max_retries`, fixed at
/// start; `retries.max_attempts` lowers it at run time).
pub const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub threads: usize,
    pub grace_period: Duration,
    pub graceful_shutdown_timeout: Duration,
    pub pid_file: PathBuf,
    pub upgrade_socket: PathBuf,
    /// Where the operator's state is kept across restarts, if anywhere.
    pub state_file: Option<PathBuf>,
}

/// The other gateway of a pair (see [`crate::pair`]).
#[derive(Clone)]
pub struct Pair {
    /// This gateway's name in the pair.
    pub name: String,
    /// The peer's admin API, without a trailing slash.
    pub peer: String,
    /// The bearer token of the peer link, shared by both gateways.
    pub token: Arc<[u8]>,
    /// The HTTPS client for the peer link (its CA and our certificate).
    pub client: reqwest::Client,
    pub sync_interval: Duration,
    pub start_timeout: Duration,
    pub vrrp_track_file: Option<PathBuf>,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("name", &self.name)
            .field("peer", &self.peer)
            .field("token", &"<redacted>")
            .field("sync_interval", &self.sync_interval)
            .field("start_timeout", &self.start_timeout)
            .field("vrrp_track_file", &self.vrrp_track_file)
            .finish()
    }
}

/// Defaults, in one place so that docs and code agree.
pub mod defaults {
    use std::time::Duration;
    pub const HEALTH_PATH: &str = "/ready";
    /// 250 ms interval and timeout with fall 2: a hung node is declared
    /// down within 750 ms (see `HealthCheck::detection_bound`).
    pub const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(250);
    pub const RISE: u32 = 2;
    pub const FALL: u32 = 2;
    pub const PASSIVE_ERROR_LIMIT: u32 = 5;
    pub const HOLD_DOWN: Duration = Duration::from_secs(30);
    pub const FLAP_WINDOW: Duration = Duration::from_secs(60);
    pub const FLAP_THRESHOLD: u32 = 3;
    pub const FLAP_HOLD: Duration = Duration::from_secs(10);
    pub const FLAP_MAX_HOLD: Duration = Duration::from_secs(300);
    pub const CONNECT: Duration = Duration::from_millis(500);
    pub const READ: Duration = Duration::from_secs(60);
    pub const WRITE: Duration = Duration::from_secs(60);
    pub const UPSTREAM_IDLE: Duration = Duration::from_secs(60);
    pub const RETRY_AFTER: Duration = Duration::from_secs(5);
    pub const DNS_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DNS_MIN_TTL: Duration = Duration::from_secs(1);
    pub const DNS_MAX_TTL: Duration = Duration::from_secs(300);
    pub const WEIGHT: u32 = 100;
    pub const GRACE_PERIOD: Duration = Duration::from_secs(5);
    pub const GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
    pub const PID_FILE: &str = "/run/twinport/gateway.pid";
    pub const UPGRADE_SOCKET: &str = "/run/twinport/gateway-upgrade.sock";
}

const MS: Duration = Duration::from_millis(1);

/// `value` as a node address: `ip:port` or `host:port`.
fn target(e: &mut Errors, field: &str, value: &str) -> Option<Target> {
    let t = Target::parse(value);
    if t.is_none() {
        e.push(
            field,
            format!("`{value}` is not an address of the form ip:port or host:port (for example 10.0.0.11:8080 or portal-a.example:8080)"),
        );
    }
    t
}

impl GatewayConfig {
    /// Checks every field of `f` and builds the runtime configuration, or
    /// returns every problem found. `base` is the directory relative paths
    /// are resolved against.
    pub fn from_file(f: FileConfig, base: &Path) -> Result<Self, Vec<FieldError>> {
        let mut e = Errors::default();
        let listeners = listeners(&mut e, &f, base);
        let mode = mode(&mut e, f.mode.as_deref());
        let (nodes, primary) = nodes(&mut e, &f);
        let health = health_check(&mut e, &f.health_check);
        let passive = Passive {
            error_limit: e.range_u32(
                "passive.error_limit",
                f.passive.error_limit,
                defaults::PASSIVE_ERROR_LIMIT,
                0,
                1000,
            ),
        };
        let failback = Failback {
            preempt: f.failback.preempt.unwrap_or(false),
            hold_down: e.duration(
                "failback.hold_down",
                f.failback.hold_down,
                defaults::HOLD_DOWN,
                Duration::ZERO,
            ),
        };
        let flap = flap_damping(&mut e, &f.flap_damping);
        let timeouts = timeouts(&mut e, &f.timeouts);
        let retries = Retries {
            max_attempts: e.range_u32(
                "retries.max_attempts",
                f.retries.max_attempts,
                MAX_ATTEMPTS,
                1,
                MAX_ATTEMPTS,
            ),
            idempotent: f.retries.idempotent.unwrap_or(true),
            idempotency_key: f.retries.idempotency_key.unwrap_or(true),
        };
        let dns = dns(&mut e, &f.dns);
        let unavailable = Unavailable {
            retry_after: e.duration(
                "unavailable.retry_after",
                f.unavailable.retry_after,
                defaults::RETRY_AFTER,
                Duration::from_secs(1),
            ),
        };
        let server = server(&mut e, &f.server, base);
        let admin = admin(&mut e, &f, listeners.admin, base);
        let clients = clients(&mut e, &f.clients);
        let affinity = affinity(&mut e, &f.affinity, base);
        let pair = f.pair.as_ref().and_then(|p| pair(&mut e, p, &server, base));
        if f.pair.is_some() && listeners.admin.is_none() {
            e.push(
                "pair",
                "a pair needs listeners.admin: the peer gateway sends its state there",
            );
        }

        if !e.0.is_empty() {
            return Err(e.0);
        }
        let nodes: [NodeConfig; 2] = nodes.try_into().expect("two nodes were checked above");
        Ok(GatewayConfig {
            listeners,
            mode,
            primary,
            nodes,
            health,
            passive,
            failback,
            flap,
            timeouts,
            retries,
            unavailable,
            server,
            admin,
            watch_config: f.watch_config.unwrap_or(true),
            dns,
            clients,
            affinity,
            pair,
        })
    }
}

/// `listeners`: the addresses (each used once) and the HTTPS certificate.
fn listeners(e: &mut Errors, f: &FileConfig, base: &Path) -> Listeners {
    let http = f
        .listeners
        .http
        .as_deref()
        .and_then(|a| e.addr("listeners.http", a));
    let metrics = f
        .listeners
        .metrics
        .as_deref()
        .and_then(|a| e.addr("listeners.metrics", a));
    let admin_addr = f
        .listeners
        .admin
        .as_deref()
        .and_then(|a| e.addr("listeners.admin", a));
    let https = f.listeners.https.as_ref().and_then(|h| {
        let address = e.addr("listeners.https.address", &h.address);
        let certificate = resolve(base, &h.certificate);
        let key = resolve(base, &h.key);
        let ocsp = h.ocsp_response.as_ref().and_then(|f| {
            let path = resolve(base, f);
            match std::fs::read(&path) {
                Ok(der) if !der.is_empty() => Some(der),
                Ok(_) => {
                    e.push(
                        "listeners.https.ocsp_response",
                        format!("{} is empty", path.display()),
                    );
                    None
                }
                Err(err) => {
                    e.push(
                        "listeners.https.ocsp_response",
                        format!("cannot read {}: {err}", path.display()),
                    );
                    None
                }
            }
        });
        let cert = match tls::load_certified_key(&certificate, &key) {
            Ok(mut ck) => {
                ck.ocsp = ocsp;
                Some(Arc::new(ck))
            }
            Err(err) => {
                e.push(err.field(), err.to_string());
                None
            }
        };
        let http2_window = match h.http2_window_bytes {
            Some(n) if !(65_535..=4 << 20).contains(&n) => {
                e.push(
                    "listeners.https.http2_window_bytes",
                    format!("{n} is out of range (65535 to 4194304)"),
                );
                n
            }
            Some(n) => n,
            None => 256 << 10,
        };
        Some(HttpsListener {
            address: address?,
            certificate,
            key,
            cert: cert?,
            http2: h.http2.unwrap_or(true),
            http2_window,
            resumption: tls::Resumption {
                session_cache: h.session_cache.unwrap_or(20_000),
                tickets: h.session_tickets.unwrap_or(true),
            },
        })
    });
    if f.listeners.http.is_none() && f.listeners.https.is_none() {
        e.push("listeners", "at least one of `http` and `https` is needed");
    }
    let mut bound: Vec<(&str, SocketAddr)> = Vec::new();
    for (field, a) in [
        ("listeners.http", http),
        ("listeners.https.address", https.as_ref().map(|h| h.address)),
        ("listeners.metrics", metrics),
        ("listeners.admin", admin_addr),
    ] {
        if let Some(a) = a {
            if let Some((other, _)) = bound.iter().find(|(_, b)| *b == a) {
                e.push(field, format!("{a} is already used by {other}"));
            }
            bound.push((field, a));
        }
    }
    Listeners {
        http,
        https,
        metrics,
        admin: admin_addr,
    }
}

/// `mode`: active-standby (the default) or active-active.
fn mode(e: &mut Errors, mode: Option<&str>) -> Mode {
    match mode {
        None | Some("active-standby") => Mode::ActiveStandby,
        Some("active-active") => Mode::ActiveActive,
        Some(other) => {
            e.push(
                "mode",
                format!("`{other}` is not a mode (active-standby or active-active)"),
            );
            Mode::ActiveStandby
        }
    }
}

/// `nodes` (exactly two twins, names and addresses apart) and `primary`.
fn nodes(e: &mut Errors, f: &FileConfig) -> (Vec<NodeConfig>, usize) {
    if f.nodes.len() != 2 {
        e.push(
            "nodes",
            format!("exactly two twin nodes are needed, found {}", f.nodes.len()),
        );
    }
    let mut nodes = Vec::new();
    for (i, n) in f.nodes.iter().enumerate() {
        let at = |k: &str| format!("nodes[{i}].{k}");
        e.name(&at("name"), &n.name);
        let address = target(e, &at("address"), &n.address);
        let agent = match &n.agent {
            Some(a) => target(e, &at("agent"), a),
            None => address.clone(),
        };
        let weight = e.range_u32(&at("weight"), n.weight, defaults::WEIGHT, 1, 1000);
        if let (Some(address), Some(agent)) = (address, agent) {
            nodes.push(NodeConfig {
                name: n.name.clone(),
                address,
                agent,
                weight,
            });
        }
    }
    if nodes.len() == 2 {
        if nodes[0].name == nodes[1].name {
            e.push(
                "nodes[1].name",
                format!("`{}` is already the name of nodes[0]", nodes[1].name),
            );
        }
        if nodes[0].address == nodes[1].address {
            e.push(
                "nodes[1].address",
                format!("{} is already the address of nodes[0]", nodes[1].address),
            );
        }
    }
    let primary = match &f.primary {
        None => 0,
        Some(p) => match f.nodes.iter().position(|n| &n.name == p) {
            Some(i) => i,
            None => {
                e.push("primary", format!("`{p}` is not the name of a node"));
                0
            }
        },
    };
    (nodes, primary)
}

/// `health_check`.
fn health_check(e: &mut Errors, hc: &FileHealthCheck) -> HealthCheck {
    let path = hc
        .path
        .clone()
        .unwrap_or_else(|| defaults::HEALTH_PATH.to_string());
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        e.push(
            "health_check.path",
            format!("`{path}` must be an absolute path such as /ready"),
        );
    }
    HealthCheck {
        path,
        interval: e.duration(
            "health_check.interval",
            hc.interval,
            defaults::HEALTH_INTERVAL,
            10 * MS,
        ),
        timeout: e.duration(
            "health_check.timeout",
            hc.timeout,
            defaults::HEALTH_TIMEOUT,
            10 * MS,
        ),
        rise: e.range_u32("health_check.rise", hc.rise, defaults::RISE, 1, 100),
        fall: e.range_u32("health_check.fall", hc.fall, defaults::FALL, 1, 100),
        shutdown_sessions_on_down: hc.shutdown_sessions_on_down.unwrap_or(true),
    }
}

/// `flap_damping`.
fn flap_damping(e: &mut Errors, fd: &FileFlapDamping) -> FlapDamping {
    let flap = FlapDamping {
        window: e.duration(
            "flap_damping.window",
            fd.window,
            defaults::FLAP_WINDOW,
            Duration::ZERO,
        ),
        threshold: e.range_u32(
            "flap_damping.threshold",
            fd.threshold,
            defaults::FLAP_THRESHOLD,
            1,
            1000,
        ),
        hold: e.duration(
            "flap_damping.hold",
            fd.hold,
            defaults::FLAP_HOLD,
            Duration::ZERO,
        ),
        max_hold: e.duration(
            "flap_damping.max_hold",
            fd.max_hold,
            defaults::FLAP_MAX_HOLD,
            Duration::ZERO,
        ),
    };
    if flap.max_hold < flap.hold {
        e.push(
            "flap_damping.max_hold",
            "must not be shorter than flap_damping.hold",
        );
    }
    flap
}

/// `timeouts`.
fn timeouts(e: &mut Errors, t: &FileTimeouts) -> Timeouts {
    Timeouts {
        connect: e.duration("timeouts.connect", t.connect, defaults::CONNECT, MS),
        read: e.duration("timeouts.read", t.read, defaults::READ, MS),
        write: e.duration("timeouts.write", t.write, defaults::WRITE, MS),
        upstream_idle: e.duration(
            "timeouts.upstream_idle",
            t.upstream_idle,
            defaults::UPSTREAM_IDLE,
            Duration::ZERO,
        ),
    }
}

/// `dns`: the servers to ask for node names, and the TTL bounds.
fn dns(e: &mut Errors, d: &FileDns) -> Dns {
    let dns = Dns {
        servers: d
            .servers
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, a)| e.addr(&format!("dns.servers[{i}]"), a))
            .collect(),
        timeout: e.duration("dns.timeout", d.timeout, defaults::DNS_TIMEOUT, MS),
        min_ttl: e.duration("dns.min_ttl", d.min_ttl, defaults::DNS_MIN_TTL, MS),
        max_ttl: e.duration("dns.max_ttl", d.max_ttl, defaults::DNS_MAX_TTL, MS),
    };
    if dns.max_ttl < dns.min_ttl {
        e.push("dns.max_ttl", "must not be shorter than dns.min_ttl");
    }
    dns
}

/// `server`: worker threads, upgrade and shutdown settings.
fn server(e: &mut Errors, s: &FileServer, base: &Path) -> ServerSettings {
    let threads = s.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 || threads > 256 {
        e.push(
            "server.threads",
            format!("{threads} is out of range (1 to 256)"),
        );
    }
    ServerSettings {
        threads,
        grace_period: s.grace_period.unwrap_or(defaults::GRACE_PERIOD),
        graceful_shutdown_timeout: s
            .graceful_shutdown_timeout
            .unwrap_or(defaults::GRACEFUL_SHUTDOWN_TIMEOUT),
        pid_file: resolve(base, s.pid_file.as_deref().unwrap_or(defaults::PID_FILE)),
        upgrade_socket: resolve(
            base,
            s.upgrade_socket
                .as_deref()
                .unwrap_or(defaults::UPGRADE_SOCKET),
        ),
        state_file: s.state_file.as_deref().map(|f| resolve(base, f)),
    }
}

/// `pair`: the peer's address and the link's credentials. The link is
/// HTTPS with the peer's certificate checked against `ca` and ours
/// presented for its mutual TLS; plain HTTP only to a loopback address
/// (one host, tests). The state the pair shares must survive a restart of
/// both, so `server.state_file` is required.
fn pair(e: &mut Errors, p: &FilePair, server: &ServerSettings, base: &Path) -> Option<Pair> {
    let before = e.0.len();
    e.name("pair.name", &p.name);
    let peer = p.peer.trim_end_matches('/').to_string();
    let https = match peer.split_once("://") {
        Some(("https", rest)) if !rest.is_empty() => true,
        Some(("http", rest)) => {
            let host = rest.split('/').next().unwrap_or("");
            let loopback = host
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback());
            if !loopback {
                e.push(
                    "pair.peer",
                    format!("`{peer}`: the peer link leaves this host only over https:// (plain http:// only to a loopback ip:port)"),
                );
            }
            false
        }
        _ => {
            e.push(
                "pair.peer",
                format!("`{peer}` is not an https://host:port URL"),
            );
            false
        }
    };
    let token = match read_token(&resolve(base, &p.token_file)) {
        Ok(t) => Some(t),
        Err(why) => {
            e.push("pair.token_file", why);
            None
        }
    };
    if server.state_file.is_none() {
        e.push(
            "pair",
            "a pair needs server.state_file: the operator's state must outlive a restart of both gateways",
        );
    }
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .no_proxy();
    if https {
        builder = builder.tls_built_in_root_certs(false);
        match &p.ca {
            None => e.push(
                "pair.ca",
                "an https:// peer needs the CA that signed its certificate",
            ),
            Some(ca) => match std::fs::read(resolve(base, ca))
                .map_err(|x| x.to_string())
                .and_then(|pem| {
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|x| x.to_string())
                }) {
                Ok(certs) if certs.is_empty() => e.push("pair.ca", "no PEM certificate in it"),
                Ok(certs) => {
                    for c in certs {
                        builder = builder.add_root_certificate(c);
                    }
                }
                Err(why) => e.push("pair.ca", format!("{ca}: {why}")),
            },
        }
    }
    match (&p.client_certificate, &p.client_key) {
        (Some(cert), Some(key)) => {
            let pem = std::fs::read(resolve(base, cert))
                .map_err(|x| format!("{cert}: {x}"))
                .and_then(|mut pem| {
                    let key =
                        std::fs::read(resolve(base, key)).map_err(|x| format!("{key}: {x}"))?;
                    pem.push(b'\n');
                    pem.extend(key);
                    Ok(pem)
                });
            match pem.and_then(|pem| reqwest::Identity::from_pem(&pem).map_err(|x| x.to_string())) {
                Ok(id) => builder = builder.identity(id),
                Err(why) => e.push("pair.client_certificate", why),
            }
        }
        (None, None) => {}
        _ => e.push(
            "pair.client_key",
            "client_certificate and client_key go together",
        ),
    }
    let sync_interval = e.duration(
        "pair.sync_interval",
        p.sync_interval,
        Duration::from_secs(1),
        Duration::from_millis(100),
    );
    let start_timeout = e.duration(
        "pair.start_timeout",
        p.start_timeout,
        Duration::from_secs(3),
        Duration::ZERO,
    );
    let client = match builder.build() {
        Ok(c) => Some(c),
        Err(why) => {
            e.push("pair", format!("cannot set up the peer link: {why}"));
            None
        }
    };
    if e.0.len() > before {
        return None;
    }
    Some(Pair {
        name: p.name.clone(),
        peer,
        token: token?,
        client: client?,
        sync_interval,
        start_timeout,
        vrrp_track_file: p.vrrp_track_file.as_deref().map(|f| resolve(base, f)),
    })
}

/// `admin`: tokens, audit log, TLS; the admin listener stays on loopback
/// unless the API asks for client certificates.
fn admin(
    e: &mut Errors,
    f: &FileConfig,
    admin_addr: Option<SocketAddr>,
    base: &Path,
) -> Option<Admin> {
    let admin = f.admin.as_ref().and_then(|a| {
        let token_file = resolve(base, &a.token_file);
        let token = match read_token(&token_file) {
            Ok(t) => Some(t),
            Err(why) => {
                e.push("admin.token_file", why);
                None
            }
        };
        let read_token =
            a.read_token_file
                .as_ref()
                .and_then(|f| match read_token(&resolve(base, f)) {
                    Ok(t) if token.as_deref() == Some(&*t) => {
                        e.push(
                            "admin.read_token_file",
                            "the read-only token must differ from the operator token",
                        );
                        None
                    }
                    Ok(t) => Some(t),
                    Err(why) => {
                        e.push("admin.read_token_file", why);
                        None
                    }
                });
        let tls = a.tls.as_ref().and_then(|t| {
            let client_ca = t.client_ca.as_ref().map(|c| resolve(base, c));
            match tls::admin_server_config(
                &resolve(base, &t.certificate),
                &resolve(base, &t.key),
                client_ca.as_deref(),
            ) {
                Ok(c) => Some(Arc::new(c)),
                Err(err) => {
                    e.push(err.admin_field(), err.to_string());
                    None
                }
            }
        });
        let mutual_tls = a.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        Some(Admin {
            token_file,
            token: token?,
            read_token,
            audit_log: resolve(base, &a.audit_log),
            tls,
            mutual_tls,
        })
    });
    let mutual = f
        .admin
        .as_ref()
        .and_then(|a| a.tls.as_ref())
        .is_some_and(|t| t.client_ca.is_some());
    if let Some(a) = admin_addr {
        if !a.ip().is_loopback() && !mutual {
            e.push(
                "listeners.admin",
                format!("{a} is not a loopback address: the admin API leaves this host only with mutual TLS (admin.tls with client_ca)"),
            );
        }
    }
    if admin_addr.is_some() && f.admin.is_none() {
        e.push(
            "admin",
            "the admin listener needs an `admin` section with token_file and audit_log",
        );
    }
    admin
}

/// `clients`: trusted proxies and the limits on what a client may send.
fn clients(e: &mut Errors, c: &FileClients) -> Clients {
    let defaults_clients = Clients::default();
    Clients {
        trusted_proxies: e.networks(
            "clients.trusted_proxies",
            c.trusted_proxies.as_deref().unwrap_or_default(),
        ),
        rate_limit: c.rate_limit.unwrap_or(0),
        max_body_bytes: match c.max_body_bytes {
            Some(0) => {
                e.push("clients.max_body_bytes", "must be at least 1");
                0
            }
            Some(n) => n,
            None => defaults_clients.max_body_bytes,
        },
        max_header_bytes: match c.max_header_bytes {
            Some(n) if !(1024..=1024 * 1024).contains(&n) => {
                e.push(
                    "clients.max_header_bytes",
                    format!("{n} is out of range (1024 to 1048576)"),
                );
                n
            }
            Some(n) => n,
            None => defaults_clients.max_header_bytes,
        },
        hsts_max_age: c.hsts_max_age.unwrap_or(defaults_clients.hsts_max_age),
    }
}

/// A cookie name: an RFC 6265 token.
fn cookie_name(e: &mut Errors, field: &str, name: &str) {
    let token = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
    if name.is_empty() || name.len() > 64 || !name.bytes().all(token) {
        e.push(
            field,
            format!("`{name}` is not a cookie name (1-64 letters, digits and !#$%&'*+-.^_`|~)"),
        );
    }
}

/// Shortest signing key accepted for the affinity cookie.
const MIN_AFFINITY_SECRET: usize = 32;

/// `affinity`: the mode, its cookie and its bounds.
fn affinity(e: &mut Errors, a: &FileAffinity, base: &Path) -> Affinity {
    let d = Affinity::default();
    let mode = match a.mode.as_deref() {
        None | Some("none") => AffinityMode::None,
        Some("cookie") => AffinityMode::Cookie,
        Some("app-cookie") => AffinityMode::AppCookie,
        Some(other) => {
            e.push(
                "affinity.mode",
                format!("`{other}` is not a mode (none, cookie or app-cookie)"),
            );
            AffinityMode::None
        }
    };
    let cookie = match mode {
        AffinityMode::AppCookie => a.app_cookie.clone().unwrap_or_else(|| "JSESSIONID".into()),
        _ => a
            .cookie
            .clone()
            .unwrap_or_else(|| "TWINPORT_AFFINITY".into()),
    };
    let field = match mode {
        AffinityMode::AppCookie => "affinity.app_cookie",
        _ => "affinity.cookie",
    };
    cookie_name(e, field, &cookie);
    if mode == AffinityMode::AppCookie && a.cookie.is_some() {
        e.push(
            "affinity.cookie",
            "names the gateway's cookie, which app-cookie mode does not insert; set affinity.app_cookie",
        );
    }
    let codec = match (&a.secret_file, mode) {
        (Some(f), AffinityMode::Cookie) => match read_token(&resolve(base, f)) {
            Ok(k) if k.len() < MIN_AFFINITY_SECRET => {
                e.push(
                    "affinity.secret_file",
                    format!("the key must be at least {MIN_AFFINITY_SECRET} characters (for example: openssl rand -hex 32)"),
                );
                None
            }
            Ok(k) => Some(Arc::new(crate::affinity::CookieCodec::new(&k))),
            Err(why) => {
                e.push("affinity.secret_file", why);
                None
            }
        },
        (None, AffinityMode::Cookie) => {
            e.push(
                "affinity.secret_file",
                "cookie mode needs a signing key file (both gateways of a pair share it)",
            );
            None
        }
        _ => None,
    };
    let max_age = e.duration(
        "affinity.max_age",
        a.max_age,
        d.max_age,
        Duration::from_secs(2),
    );
    let idle_timeout = e.duration(
        "affinity.idle_timeout",
        a.idle_timeout,
        d.idle_timeout,
        Duration::from_secs(1),
    );
    let drain_timeout = e.duration(
        "affinity.drain_timeout",
        a.drain_timeout,
        d.drain_timeout,
        Duration::from_secs(1),
    );
    let max_entries = e.range_u32(
        "affinity.max_entries",
        a.max_entries,
        d.max_entries,
        100,
        10_000_000,
    );
    Affinity {
        mode,
        cookie,
        codec,
        max_age,
        idle_timeout,
        max_entries,
        drain_timeout,
    }
}
