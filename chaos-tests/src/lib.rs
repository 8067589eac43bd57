//! Twinport's chaos suite: the appliance proves under real faults that it
//! loses nothing, with figures.
//!
//! - [`appliance`]: the whole appliance from the built binaries on loopback;
//! - [`fault`]: our fault-injecting TCP proxy (latency, blackhole);
//! - [`env`]: a PostgreSQL server and a tmpfs of the scenario's own;
//! - [`load`]: the bounded mixed load (browsing, kiosks, desks), every
//!   request recorded;
//! - [`pair`]: the gateway pair on network namespaces of its own, with
//!   keepalived moving a virtual IP between two gateway hosts;
//! - [`tickets`]: the store against what the kiosks printed;
//! - [`scenarios`]: one fault each, with its bounds, one type per
//!   scenario behind [`scenarios::Scenario`];
//! - [`report`]: the figures as a table, Markdown and JSON.
//!
//! The `chaos-tests` binary runs the suite (`--full` for the long one);
//! `tests/short.rs` runs the short suite in CI and asserts every bound.
#![forbid(unsafe_code)]

pub mod appliance;
pub mod env;
pub mod fault;
pub mod load;
pub mod pair;
pub mod report;
pub mod scenarios;
pub mod tickets;
