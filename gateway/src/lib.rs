//! Twinport's front gateway: a pingora proxy in front of two twin portal
//! nodes that moves traffic to the healthy twin without failing requests.
//!
//! # Layout
//!
//! | module | job |
//! | --- | --- |
//! | [`config`] | YAML file → validated runtime configuration |
//! | [`failover`] | node health, roles and failover: a pure state machine |
//! | [`health`] | active readiness checks against each node-agent |
//! | [`controller`] | owns the state machine, publishes routing snapshots |
//! | [`routing`] | the snapshot every request reads, and node picking |
//! | [`node`] | per-node runtime: peer, metric handles, open connections |
//! | [`proxy`] | pingora hooks: pick, retry on the twin, passive detection |
//! | [`unavailable`] | the 503 page (HTML or JSON) when no node can serve |
//! | [`metrics`] | Prometheus metrics and their listener |
//! | [`tls`] | certificate loading and the live certificate resolver |
//! | [`server`] | assembles the pingora server from the configuration |
//!
//! See ARCHITECTURE.md at the repository root for the request path and
//! the failover state diagram.

#![forbid(unsafe_code)]

pub mod config;
pub mod controller;
pub mod failover;
pub mod health;
pub mod metrics;
pub mod node;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod tls;
pub mod unavailable;
