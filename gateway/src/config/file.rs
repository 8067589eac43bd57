//! The gateway's YAML file, exactly as an operator writes it.
//!
//! These types only describe the *shape* of the file: every field is
//! optional where a sensible default exists, unknown keys are refused
//! (`deny_unknown_fields`) so that a typo never silently falls back to a
//! default, and nothing here is checked beyond what serde checks. The
//! conversion into the runtime types in [`super::runtime`] is where values
//! are validated and every error is collected with the field it belongs to.

use serde::Deserialize;
use std::time::Duration;

/// The whole gateway file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the gateway listens.
    pub listeners: FileListeners,
    /// `active-standby` (default) or `active-active`.
    #[serde(default)]
    pub mode: Option<String>,
    /// In active-standby, the node that is primary when both are healthy at
    /// start and the node that takes the role back when failback preempts.
    /// Defaults to the first node.
    #[serde(default)]
    pub primary: Option<String>,
    /// Exactly two twin nodes.
    pub nodes: Vec<FileNode>,
    #[serde(default)]
    pub health_check: FileHealthCheck,
    #[serde(default)]
    pub passive: FilePassive,
    #[serde(default)]
    pub failback: FileFailback,
    #[serde(default)]
    pub flap_damping: FileFlapDamping,
    #[serde(default)]
    pub timeouts: FileTimeouts,
    #[serde(default)]
    pub retries: FileRetries,
    #[serde(default)]
    pub unavailable: FileUnavailable,
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub admin: Option<FileAdmin>,
    #[serde(default)]
    pub dns: FileDns,
    #[serde(default)]
    pub clients: FileClients,
    #[serde(default)]
    pub affinity: FileAffinity,
    #[serde(default)]
    pub pair: Option<FilePair>,
    /// Watch this file and reload it when it changes (default true).
    #[serde(default)]
    pub watch_config: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// File holding the bearer token (one line). Must not be readable by
    /// other users.
    pub token_file: String,
    /// Optional file with a second token that may only read (`GET`:
    /// status, the status page's data) — for monitoring and people on
    /// call; changes with it are refused with 403.
    #[serde(default)]
    pub read_token_file: Option<String>,
    /// Append-only JSON-lines audit log of every admin call.
    pub audit_log: String,
    /// HTTPS for the admin API, with client certificates when `client_ca`
    /// is given: for operators who reach it from another host. Bearer
    /// tokens are still required. Changes take effect at the next start.
    #[serde(default)]
    pub tls: Option<FileAdminTls>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdminTls {
    pub certificate: String,
    pub key: String,
    /// PEM CA certificates; a client must present a certificate they
    /// signed (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListeners {
    /// Plain HTTP listener, `host:port`.
    #[serde(default)]
    pub http: Option<String>,
    /// HTTPS listener with its certificate.
    #[serde(default)]
    pub https: Option<FileHttps>,
    /// Prometheus metrics listener, `host:port`.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Admin API listener, `host:port` (keep it on loopback or a
    /// management network). Needs the `admin` section.
    #[serde(default)]
    pub admin: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttps {
    pub address: String,
    /// PEM certificate chain, leaf first. Relative paths are resolved
    /// against the directory of the config file.
    pub certificate: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// A DER OCSP response for the certificate, stapled to every
    /// handshake (fetch it with `openssl ocsp ... -respout`, refresh it
    /// before it expires and reload). Optional.
    #[serde(default)]
    pub ocsp_response: Option<String>,
    /// Offer HTTP/2 by ALPN (default true).
    #[serde(default)]
    pub http2: Option<bool>,
    /// How much of a request body an HTTP/2 client may send on one stream
    /// before the gateway has passed it on (the stream's flow-control
    /// window; the connection's is 4 times this). Default 262144 (256 KiB;
    /// the protocol's default of 64 KiB caps an upload at 2 MiB/s over a
    /// 30 ms round trip, 256 KiB at about 6, 1 MiB at about 21: see
    /// bench/UPLOAD-RTT.md); 65535 to 4194304. A larger window is more
    /// memory a stalled node can make the gateway hold per connection.
    #[serde(default)]
    pub http2_window_bytes: Option<u32>,
    /// TLS sessions kept in memory so that a returning client resumes
    /// without a full handshake (default 20000, as HAProxy's
    /// `tune.ssl.cachesize`; 0 keeps none).
    #[serde(default)]
    pub session_cache: Option<usize>,
    /// Stateless session tickets, their key changed every 6 hours
    /// (default true).
    #[serde(default)]
    pub session_tickets: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNode {
    /// Short name used in logs, metrics and the admin API (`a`, `b`).
    pub name: String,
    /// The portal application, `ip:port` or `host:port` (resolved by DNS
    /// and re-resolved when the record's TTL runs out).
    pub address: String,
    /// The node-agent answering the readiness protocol, `ip:port` or
    /// `host:port`. Defaults to the application address.
    #[serde(default)]
    pub agent: Option<String>,
    /// Relative share of traffic in active-active (1..=1000, default 100).
    #[serde(default)]
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealthCheck {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub rise: Option<u32>,
    #[serde(default)]
    pub fall: Option<u32>,
    /// Cut connections still open to a node the moment it is declared
    /// down, so idempotent requests waiting on it are retried on the twin
    /// (HAProxy's `on-marked-down shutdown-sessions`). Default true.
    #[serde(default)]
    pub shutdown_sessions_on_down: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePassive {
    /// Consecutive timeouts or 5xx answers that eject a node (default 5;
    /// 0 disables soft ejection). Refused and reset connections eject at
    /// once regardless.
    #[serde(default)]
    pub error_limit: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFailback {
    /// Give the primary role back to the configured primary once it has
    /// been healthy for `hold_down` (default false: traffic stays).
    #[serde(default)]
    pub preempt: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub hold_down: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFlapDamping {
    /// How far back node failures are counted.
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// Failures within the window that make a node "flapping".
    #[serde(default)]
    pub threshold: Option<u32>,
    /// How long a flapping node is kept out after it looks healthy again;
    /// doubles with every further failure, up to `max_hold`.
    #[serde(default, with = "humantime_serde")]
    pub hold: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_hold: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTimeouts {
    #[serde(default, with = "humantime_serde")]
    pub connect: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub read: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub write: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub upstream_idle: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUnavailable {
    /// Value of `Retry-After` when no node can serve.
    #[serde(default, with = "humantime_serde")]
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// Worker threads of the proxy service.
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub grace_period: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub graceful_shutdown_timeout: Option<Duration>,
    #[serde(default)]
    pub pid_file: Option<String>,
    #[serde(default)]
    pub upgrade_socket: Option<String>,
    /// Where the operator's state (drains, maintenance, the chosen
    /// primary) is kept across restarts. Without it that state lives in
    /// memory only.
    #[serde(default)]
    pub state_file: Option<String>,
}

/// `pair`: the other gateway of a pair, with which the operator's state
/// is kept in step (see `crate::pair`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePair {
    /// This gateway's name in the pair (`gw1`, `gw2`): it breaks ties
    /// between changes made at the same moment on both.
    pub name: String,
    /// The other gateway's admin API, `https://host:port` (plain `http://`
    /// only to a loopback address).
    pub peer: String,
    /// File with the bearer token both gateways of the pair share for the
    /// peer link (it allows nothing but the exchange of operator state).
    pub token_file: String,
    /// PEM CA certificates that signed the peer's admin certificate.
    #[serde(default)]
    pub ca: Option<String>,
    /// This gateway's client certificate and key for the peer's mutual TLS.
    #[serde(default)]
    pub client_certificate: Option<String>,
    #[serde(default)]
    pub client_key: Option<String>,
    /// How often the two compare their state when nothing changed
    /// (a change is sent at once). Default 1s.
    #[serde(default, with = "humantime_serde")]
    pub sync_interval: Option<Duration>,
    /// How long a starting gateway waits for its peer's state before it
    /// serves with the state it kept. Default 3s.
    #[serde(default, with = "humantime_serde")]
    pub start_timeout: Option<Duration>,
    /// A keepalived `vrrp_track_file` this gateway keeps: `0` while it is
    /// healthy (`/healthz`), `-254` (FAULT: the VIP moves at once) when it
    /// is not or is stopping. Its unit writes `-254` when the process
    /// ends, however it ends (`ExecStopPost`).
    #[serde(default)]
    pub vrrp_track_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDns {
    /// Name servers, `ip:port`; default: the system's (/etc/resolv.conf).
    #[serde(default)]
    pub servers: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Re-resolve no sooner than this, whatever the record's TTL.
    #[serde(default, with = "humantime_serde")]
    pub min_ttl: Option<Duration>,
    /// Re-resolve at least this often.
    #[serde(default, with = "humantime_serde")]
    pub max_ttl: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetries {
    /// Attempts per request, the first included (1 to 3, default 3: the
    /// first node, its twin, and once more on a kept-alive connection that
    /// turned out to be closed). A connection that could not be made is
    /// retried on the same node when the twin is out of service. 1 turns
    /// retries off.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Retry idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE) whose
    /// node failed before answering (default true). Requests that could
    /// not connect are retried whatever this says; a POST that reached a
    /// node never is.
    #[serde(default)]
    pub idempotent: Option<bool>,
    /// Treat a request that carries an `Idempotency-Key` header (any
    /// method) as idempotent (default true): the application promises to
    /// answer a repeated key with the first result, so the twin may get
    /// the request again when its node failed before answering.
    #[serde(default)]
    pub idempotency_key: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClients {
    /// Proxies in front of the gateway (CIDR or address) whose
    /// `X-Forwarded-For` and `Forwarded` are kept and extended; from any
    /// other peer they are replaced (default: none is trusted).
    #[serde(default)]
    pub trusted_proxies: Option<Vec<String>>,
    /// Requests per second one client address may make (0: no limit).
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Largest request body in bytes (default 10 MiB); larger is 413.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Largest request line and headers together in bytes (default 64 KiB,
    /// at most 1 MiB, pingora's own limit); larger is 431.
    #[serde(default)]
    pub max_header_bytes: Option<u64>,
    /// `Strict-Transport-Security` max-age on HTTPS answers (default one
    /// year; 0s sends none).
    #[serde(default, with = "humantime_serde")]
    pub hsts_max_age: Option<Duration>,
}

/// Session affinity: which requests stay on one twin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAffinity {
    /// `none` (default), `cookie` (the gateway inserts a signed cookie
    /// naming the node) or `app-cookie` (the gateway follows the
    /// application's session cookie, learned from the node's `Set-Cookie`).
    #[serde(default)]
    pub mode: Option<String>,
    /// The gateway's cookie in `cookie` mode (default `TWINPORT_AFFINITY`).
    #[serde(default)]
    pub cookie: Option<String>,
    /// The application's session cookie in `app-cookie` mode (default
    /// `JSESSIONID`).
    #[serde(default)]
    pub app_cookie: Option<String>,
    /// `cookie` mode: file with the key that signs the cookie (one line,
    /// at least 32 characters, not readable by other users). Both gateways
    /// of a pair use the same key, so either honours the other's cookies.
    #[serde(default)]
    pub secret_file: Option<String>,
    /// How long a gateway cookie is valid (default 8h); it is renewed on a
    /// response once half of that has passed.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// A session with no request for this long is forgotten: `app-cookie`
    /// table entries expire, and it no longer counts as bound to its node
    /// (default 30m).
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Most sessions remembered (the `app-cookie` table, and the sessions
    /// counted per node); the least recently seen go first (default
    /// 100000).
    #[serde(default)]
    pub max_entries: Option<u32>,
    /// A soft drain (`twinctl drain --soft`, or the node's agent reporting
    /// `draining`) keeps serving the node's sessions for at most this long
    /// (default 15m), then drains hard and the rest move to the twin.
    #[serde(default, with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,
}
