//! What every Twinport daemon (gateway, node-agent, ticketing) shows its
//! operators in the same way:
//!
//! - [`config`]: a YAML file read into typed serde structs, then validated
//!   into runtime types with every error collected and named by file, line
//!   and field ([`config::FieldError`], [`config::ConfigError`]);
//! - [`token`]: bearer-token files (refused when world-readable) and the
//!   constant-time check of an `Authorization` header;
//! - [`audit`]: the append-only JSON-lines audit log of control calls;
//! - [`http`]: JSON errors and the token-and-audit guard of control APIs;
//! - [`metrics`]: Prometheus registries named `twinport_<subsystem>_*`;
//! - [`net`]: whether a peer is a trusted proxy (IPv4-mapped addresses too);
//! - [`cli`]: config loading with `--check` and exit code 64, the stop signals;
//! - [`systemd`]: readiness, reload and stop notifications and the watchdog;
//! - [`timestamp`]: the one time format of logs, status and audit.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod config;
pub mod http;
pub mod locate;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod systemd;
pub mod token;

use std::time::SystemTime;

/// RFC 3339 time with milliseconds, UTC.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
