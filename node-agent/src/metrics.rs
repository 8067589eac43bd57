//! The agent's Prometheus metrics (prefix `twinport_agent_`), served on the
//! readiness listener at `/metrics`.

use crate::state::State;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every `result` of `twinport_agent_upgrades_total`.
pub const UPGRADE_RESULTS: [&str; 4] = ["succeeded", "rolled_back", "rollback_failed", "aborted"];

pub struct Metrics {
    pub registry: Registry,
    /// 1 for the node's current state.
    pub state: IntGaugeVec,
    pub transitions: IntCounterVec,
    pub probe_checks: IntCounterVec,
    /// 1 while the probe passes (after rise), 0 otherwise.
    pub probe_up: IntGaugeVec,
    pub app_up: IntGauge,
    pub app_restarts: IntCounter,
    pub upgrades: IntCounterVec,
    pub upgrade_in_progress: IntGauge,
    /// 1 for the release `current` points at.
    pub release: IntGaugeVec,
}

impl Metrics {
    pub fn new(node: &str) -> Metrics {
        let registry = twinport_ops::metrics::registry("agent", node);
        use twinport_ops::metrics::register as reg;
        let r = &registry;
        let m = Metrics {
            state: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("state", "1 for the node's current state"),
                    &["state"],
                )
                .unwrap(),
            ),
            transitions: reg(
                r,
                IntCounterVec::new(
                    Opts::new("transitions_total", "State transitions of the node"),
                    &["from", "to"],
                )
                .unwrap(),
            ),
            probe_checks: reg(
                r,
                IntCounterVec::new(
                    Opts::new("probe_checks_total", "Probe runs by result"),
                    &["probe", "result"],
                )
                .unwrap(),
            ),
            probe_up: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("probe_up", "1 while the probe passes (after rise)"),
                    &["probe"],
                )
                .unwrap(),
            ),
            app_up: reg(
                r,
                IntGauge::new("app_up", "1 while the supervised app runs").unwrap(),
            ),
            app_restarts: reg(
                r,
                IntCounter::new(
                    "app_restarts_total",
                    "Restarts of the app after it exited unexpectedly",
                )
                .unwrap(),
            ),
            upgrades: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "upgrades_total",
                        "Upgrades by result (succeeded, rolled_back, rollback_failed, aborted)",
                    ),
                    &["result"],
                )
                .unwrap(),
            ),
            upgrade_in_progress: reg(
                r,
                IntGauge::new("upgrade_in_progress", "1 while an upgrade runs").unwrap(),
            ),
            release: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("release_info", "1 for the release the node runs"),
                    &["version"],
                )
                .unwrap(),
            ),
            registry,
        };
        m.set_state(State::Starting);
        // Every result exists from the start, so that the first rollback
        // is an increase that rate() and alerts see.
        for result in UPGRADE_RESULTS {
            m.upgrades.with_label_values(&[result]);
        }
        m
    }

    pub fn set_state(&self, current: State) {
        for s in State::ALL {
            self.state
                .with_label_values(&[s.as_str()])
                .set(i64::from(s == current));
        }
    }

    pub fn set_release(&self, version: &str) {
        self.release.reset();
        self.release.with_label_values(&[version]).set(1);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        twinport_ops::metrics::render(&self.registry)
    }
}
