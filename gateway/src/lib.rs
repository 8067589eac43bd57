//! Twinport's front gateway: a pingora proxy in front of two twin portal
//! nodes that moves traffic to the healthy twin without failing requests.
//!
//! # Layout
//!
//! | module | job |
//! | --- | --- |
//! | [`affinity`] | session affinity: the signed cookie, the application-cookie table, sessions per node |
//! | [`admin`] | the admin API: status, drain, switchover, reload (axum) |
//! | [`clients`] | client address behind trusted proxies, forwarding and hop-by-hop headers, rate limit |
//! | [`reload`] | config reload from the API, SIGHUP or a file change |
//! | [`config`] | YAML file → validated runtime configuration |
//! | [`dns`] | node host names resolved with hickory, re-resolved on TTL |
//! | [`failover`] | node health, roles and failover: a pure state machine |
//! | [`health`] | active readiness checks against each node-agent |
//! | [`controller`] | owns the state machine, publishes routing snapshots |
//! | [`selfcheck`] | the gateway's own health: a self-check through its listener, the control loop's beat, `/healthz`, the systemd watchdog |
//! | [`routing`] | the snapshot every request reads, and node picking |
//! | [`node`] | per-node runtime: peer, metric handles, open connections |
//! | [`pair`] | the gateway pair: the operator state kept in a file and in step with the peer gateway, the VRRP state |
//! | [`proxy`] | pingora hooks: pick, retry on the twin, passive detection |
//! | [`unavailable`] | the 503 page (HTML or JSON) when no node can serve |
//! | [`metrics`] | Prometheus metrics and their listener |
//! | [`status`] | what the admin API's status call and page show |
//! | [`tls`] | certificate loading and the live certificate resolver |
//! | [`server`] | assembles the pingora server from the configuration |
//!
//! The config file mechanics, bearer tokens and the audit log are shared
//! with the node-agent in the `twinport-ops` crate.
//!
//! See ARCHITECTURE.md at the repository root for the request path and
//! the failover state diagram.

#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod affinity;
pub mod clients;
pub mod config;
pub mod controller;
pub mod dns;
pub mod failover;
pub mod health;
pub mod metrics;
pub mod node;
pub mod pair;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod selfcheck;
pub mod server;
pub mod status;
pub mod tls;
pub mod unavailable;
