//! The service's Prometheus metrics (prefix `twinport_ticketing_`).

use crate::config::Branch;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub issued: IntCounterVec,
    pub waiting: IntGaugeVec,
    pub wait_seconds: HistogramVec,
    pub calls: IntCounterVec,
    pub no_shows: IntCounterVec,
    pub desks_open: IntGaugeVec,
    pub wait_target: IntGaugeVec,
    pub longest_wait: IntGaugeVec,
    pub day_closes: IntCounterVec,
    pub not_served: IntCounterVec,
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
            desks_open: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("desks_open", "Desks open now"),
                    &["branch"],
                )
                .unwrap(),
            ),
            wait_target: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "wait_target_seconds",
                        "The service's target waiting time (configuration)",
                    ),
                    &["branch", "service"],
                )
                .unwrap(),
            ),
            longest_wait: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "longest_wait_seconds",
                        "How long the visitor who has waited longest has waited so far (0: nobody waits)",
                    ),
                    &["branch", "service"],
                )
                .unwrap(),
            ),
            day_closes: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "day_closes_total",
                        "Branch days this instance closed (the twin that gets there first closes it)",
                    ),
                    &["branch"],
                )
                .unwrap(),
            ),
            not_served: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "not_served_total",
                        "Tickets still waiting, called or being served when their day was closed",
                    ),
                    &["branch"],
                )
                .unwrap(),
            ),
            registry,
        }
    }

    /// Creates every series of the branch's services and desks with 0, so
    /// that rates and alerts see the first ticket, and sets the targets.
    pub fn init_branch(&self, b: &Branch) {
        for s in &b.services {
            let l = [b.id.as_str(), s.prefix.as_str()];
            self.issued.with_label_values(&l);
            self.no_shows.with_label_values(&l);
            self.wait_seconds.with_label_values(&l);
            self.waiting.with_label_values(&l);
            self.longest_wait.with_label_values(&l);
            self.wait_target
                .with_label_values(&l)
                .set(s.target_wait.as_secs() as i64);
        }
        for d in &b.desks {
            self.calls.with_label_values(&[&b.id, &d.id]);
        }
        self.desks_open.with_label_values(&[&b.id]);
        self.day_closes.with_label_values(&[&b.id]);
        self.not_served.with_label_values(&[&b.id]);
    }

    pub fn render(&self) -> String {
        twinport_ops::metrics::render(&self.registry)
    }
}
