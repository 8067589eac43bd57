//! The service's Prometheus metrics (prefix `twinport_ticketing_`).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub issued: IntCounterVec,
    pub waiting: IntGaugeVec,
    pub wait_seconds: HistogramVec,
    pub calls: IntCounterVec,
    pub no_shows: IntCounterVec,
}

impl Metrics {
    pub fn new(node: &str) -> Metrics {
        let registry = twinport_ops::metrics::registry("ticketing", node);
        use twinport_ops::metrics::register as reg;
        let r = &registry;
        Metrics {
            issued: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tickets_issued_total",
                        "Tickets issued (replays of an Idempotency-Key not counted)",
                    ),
                    &["branch", "service"],
                )
                .unwrap(),
            ),
            waiting: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("waiting", "Visitors waiting now, by service"),
                    &["branch", "service"],
                )
                .unwrap(),
            ),
            wait_seconds: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new("wait_seconds", "Time from issue to call").buckets(vec![
                        60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0,
                        7200.0,
                    ]),
                    &["branch", "service"],
                )
                .unwrap(),
            ),
            calls: reg(
                r,
                IntCounterVec::new(
                    Opts::new("calls_total", "Tickets called, by desk"),
                    &["branch", "desk"],
                )
                .unwrap(),
            ),
            no_shows: reg(
                r,
                IntCounterVec::new(
                    Opts::new("no_shows_total", "Called visitors who did not come"),
                    &["branch", "service"],
                )
                .unwrap(),
            ),
            registry,
        }
    }

    pub fn render(&self) -> String {
        twinport_ops::metrics::render(&self.registry)
    }
}
