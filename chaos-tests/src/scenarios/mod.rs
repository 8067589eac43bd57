//! The scenarios: one fault each, under load, with the bounds it must keep.
//!
//! Every scenario is a type of its own, in a file of its own, behind
//! [`Scenario`]: it says what the appliance runs on (`set_up`), injects
//! its fault (`fault`), lifts it (`heal`), waits for the appliance to
//! recover (`recover`, the cooldown by default) and adds its own bounds
//! (`bounds`). [`run`] does the rest the same way for all: a fresh
//! appliance, the load, the warm-up, the gateway's view every 25 ms, and
//! the bounds every scenario keeps — no ticket lost, none doubled, none
//! issued that a kiosk did not print, and a real load ran. A new scenario
//! is a new file here and one line in [`all`].

mod binary_upgrade;
mod crash;
mod disk_full;
mod drain;
mod flapping;
mod gateway_crash;
mod invalid_config;
mod pg_restart;
mod reload;
mod rolling_upgrade;
mod run;
mod silent;
mod slow;
mod switchover;

use crate::appliance::{HealthCheck, Store};
use crate::load::Plan;
use crate::report::ScenarioResult;
use anyhow::Context;
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;

pub use run::{Finished, Running, Seen};

/// One fault under load, and the bounds the appliance must keep through it.
#[async_trait]
pub trait Scenario: Send {
    /// Its name on the command line and in the report.
    fn name(&self) -> &'static str;
    /// The fault, in one line.
    fn summary(&self) -> &'static str;
    /// What the appliance runs on. Whatever the scenario starts for it (a
    /// database, a disk) it keeps until [`Scenario::tear_down`].
    async fn set_up(&mut self, _s: &Settings) -> anyhow::Result<Setup> {
        Ok(Setup::default())
    }
    /// Injects the fault after the warm-up (at the moment [`Times::at`])
    /// and holds it where it has a duration.
    async fn fault(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<()>;
    /// Lifts the fault; returns when it was lifted (`run.now()`).
    async fn heal(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<Duration>;
    /// Waits for the appliance to recover and lets the load run on.
    async fn recover(&mut self, _run: &Running, s: &Settings) {
        tokio::time::sleep(s.cooldown()).await;
    }
    /// The scenario's own bounds and notes, on top of the common ones.
    fn bounds(&mut self, f: &mut Finished, s: &Settings, t: Times);
    /// Frees what `set_up` made, once the appliance has stopped.
    async fn tear_down(&mut self) {}
}

/// What the appliance of a scenario runs on.
#[derive(Debug, Clone)]
pub struct Setup {
    pub store: Store,
    /// The nodes' links go through our fault-injecting proxy.
    pub proxied: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            store: Store::Sqlite(None),
            proxied: false,
        }
    }
}

/// When the fault struck and when it was lifted, from the load's start.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub at: Duration,
    pub lifted: Duration,
}

/// Every scenario, in the suite's order.
pub fn all() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(crash::Crash::primary()),
        Box::new(crash::Crash::standby()),
        Box::new(silent::Silent::hang()),
        Box::new(slow::Slow),
        Box::new(silent::Silent::blackhole()),
        Box::new(flapping::Flapping),
        Box::new(drain::Drain::default()),
        Box::new(switchover::Switchover::default()),
        Box::new(reload::Reload::default()),
        Box::new(invalid_config::InvalidConfig::default()),
        Box::new(binary_upgrade::BinaryUpgrade::default()),
        Box::new(rolling_upgrade::RollingUpgrade::default()),
        Box::new(pg_restart::PgRestart::default()),
        Box::new(disk_full::DiskFull::default()),
    ]
}

/// Every scenario's name and fault, in the suite's order (the gateway
/// pair's `gateway-crash` last: it runs on a lab of its own).
pub fn list() -> Vec<(&'static str, &'static str)> {
    let mut l: Vec<_> = all().iter().map(|s| (s.name(), s.summary())).collect();
    l.push((gateway_crash::NAME, gateway_crash::SUMMARY));
    l
}

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The long version (more clients, longer holds).
    pub full: bool,
    pub bin_dir: PathBuf,
    pub health: HealthCheck,
}

impl Settings {
    pub fn warmup(&self) -> Duration {
        secs(if self.full { 3.0 } else { 1.0 })
    }
    pub fn hold(&self) -> Duration {
        secs(if self.full { 5.0 } else { 2.0 })
    }
    /// A hang or blackhole lasts longer than any bound it could meet
    /// without detection, so a gateway that does not detect fails.
    pub fn long_hold(&self) -> Duration {
        secs(if self.full { 8.0 } else { 4.0 })
    }
    pub fn cooldown(&self) -> Duration {
        secs(if self.full { 3.0 } else { 1.0 })
    }
    pub fn plan(&self) -> Plan {
        Plan {
            browsers: if self.full { 4 } else { 2 },
            kiosks: if self.full { 3 } else { 2 },
            desks: if self.full { 2 } else { 1 },
            // Stopped by the scenario; this is only the outer limit.
            duration: Duration::from_secs(300),
            max_per_worker: 200_000,
            settle: Duration::from_secs(20),
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Runs scenario `name`: a fresh appliance under load, the warm-up, the
/// fault, the heal, the recovery, then the common bounds and its own.
pub async fn run(name: &str, s: &Settings) -> anyhow::Result<ScenarioResult> {
    if name == gateway_crash::NAME {
        return gateway_crash::run(s).await;
    }
    let mut sc = all()
        .into_iter()
        .find(|sc| sc.name() == name)
        .with_context(|| format!("no scenario `{name}`"))?;
    let setup = sc.set_up(s).await?;
    let mut run = Running::start(s, name, setup.store, setup.proxied).await?;
    tokio::time::sleep(s.warmup()).await;
    let at = run.now();
    sc.fault(&mut run, s).await?;
    let lifted = sc.heal(&mut run, s).await?;
    sc.recover(&run, s).await;
    let mut f = run.finish(name, sc.summary()).await?;
    sc.bounds(&mut f, s, Times { at, lifted });
    let r = f.into_result();
    sc.tear_down().await;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_its_own_name() {
        let names: Vec<_> = list().into_iter().map(|(n, _)| n).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), 15);
    }
}
