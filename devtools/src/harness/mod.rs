//! Test harnesses shared by the crates' integration tests: the real
//! binaries on ephemeral loopback ports, configured per test.
//!
//! - [`gateway`]: the gateway in front of two demo twin nodes;
//! - [`agent`]: per twin a `node-agent` supervising a `demo-node` app,
//!   behind the gateway;
//! - [`ticketing`]: the ticketing service on SQLite or a fresh PostgreSQL
//!   database;
//! - [`visitors`]: visitors of a stateful application, each with its own
//!   cookies (session affinity).

pub mod agent;
pub mod gateway;
pub mod ticketing;
pub mod visitors;
