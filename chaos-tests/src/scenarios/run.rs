//! What every scenario shares: the appliance under load with the gateway's
//! view recorded ([`Running`]), and the figures and common bounds once the
//! load stopped ([`Finished`]).

use super::{Settings, Times};
use crate::appliance::{node_field, Appliance, Options, Store, BRANCH};
use crate::load::{self, Outcome};
use crate::report::ScenarioResult;
use crate::tickets;
use anyhow::Context;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the gateway reported at one moment.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Duration,
    pub primary: Option<String>,
    pub health: [String; 2],
    pub admin: [String; 2],
    pub version: [String; 2],
}

impl Seen {
    fn from(at: Duration, s: &Value) -> Seen {
        let f = |n: &str, k: &str| node_field(s, n, k).unwrap_or("").to_string();
        Seen {
            at,
            primary: s["primary"].as_str().map(str::to_string),
            health: [f("a", "health"), f("b", "health")],
            admin: [f("a", "admin"), f("b", "admin")],
            version: [f("a", "version"), f("b", "version")],
        }
    }
}

/// A scenario in progress: the appliance, its load and the gateway's view.
pub struct Running {
    pub app: Appliance,
    t0: Instant,
    stop: Arc<AtomicBool>,
    load: tokio::task::JoinHandle<Outcome>,
    monitor: tokio::task::JoinHandle<Vec<Seen>>,
    retries_before: f64,
    _stop_on_drop: StopOnDrop,
}

impl Running {
    pub(super) async fn start(
        s: &Settings,
        tag: &str,
        store: Store,
        proxied: bool,
    ) -> anyhow::Result<Running> {
        let app = Appliance::start(
            tag,
            Options {
                bin_dir: s.bin_dir.clone(),
                store,
                health: s.health,
                proxied,
            },
        )
        .await?;
        let retries_before = app.metric_sum("twinport_retries_total").await;
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(load::run(app.url(""), s.plan(), t0, stop.clone()));
        let monitor = tokio::spawn(watch(format!("http://{}", app.admin), t0, stop.clone()));
        Ok(Running {
            app,
            t0,
            _stop_on_drop: StopOnDrop(stop.clone()),
            stop,
            load,
            monitor,
            retries_before,
        })
    }

    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Waits until the gateway's status satisfies `pred` (bounded).
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(s) = self.app.status().await {
                if pred(&s) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Waits (up to `wait`) for the gateway to see node `n` up again.
    pub async fn wait_up(&self, n: usize, wait: Duration) {
        let node = self.app.nodes[n].name;
        self.wait_until(wait, |st| node_field(st, node, "health") == Some("up"))
            .await;
    }

    /// Stops the load and the monitor; the common figures and bounds.
    pub(super) async fn finish(self, name: &str, fault: &str) -> anyhow::Result<Finished> {
        self.stop.store(true, Ordering::Relaxed);
        let out = self.load.await.context("the load")?;
        let seen = self.monitor.await.context("the monitor")?;
        let retries = self.app.metric_sum("twinport_retries_total").await - self.retries_before;
        let stored = tickets::read(&self.app.database, BRANCH).await?;
        let mut r = ScenarioResult {
            scenario: name.into(),
            fault: fault.into(),
            ..ScenarioResult::default()
        };
        r.count(&out.records);
        r.retried_by_gateway = retries.max(0.0) as u64;
        r.tickets = tickets::audit(&stored, &out.acks);
        ticket_bounds(&mut r, &out);
        Ok(Finished {
            r,
            out,
            seen,
            app: self.app,
        })
    }
}

/// The bounds every scenario holds the store and the kiosks to: no ticket
/// lost, doubled or issued unprinted, no touch abandoned or answered
/// twice, and enough traffic to mean something.
pub(super) fn ticket_bounds(r: &mut ScenarioResult, out: &Outcome) {
    r.bound(
        r.tickets.lost == 0,
        format!("{} tickets lost: {:?}", r.tickets.lost, r.tickets.examples),
    );
    r.bound(
        r.tickets.doubled == 0,
        format!("{} tickets doubled", r.tickets.doubled),
    );
    r.bound(
        r.tickets.unacknowledged == 0,
        format!(
            "{} tickets issued that no kiosk printed",
            r.tickets.unacknowledged
        ),
    );
    r.bound(
        out.conflicting.is_empty(),
        format!("touches answered with two tickets: {:?}", out.conflicting),
    );
    r.bound(
        out.abandoned.is_empty(),
        format!("kiosk touches never acknowledged: {:?}", out.abandoned),
    );
    r.bound(r.sent >= 50, format!("only {} requests were sent", r.sent));
    r.bound(
        r.tickets.acknowledged >= 5,
        format!("only {} tickets printed", r.tickets.acknowledged),
    );
}

/// Stops the load and the monitor when dropped: a scenario that ends
/// early (an error) leaves nothing hammering an appliance that is gone.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub struct Finished {
    pub r: ScenarioResult,
    pub out: Outcome,
    pub seen: Vec<Seen>,
    /// Still running: stopped when this is dropped.
    pub app: Appliance,
}

impl Finished {
    /// The first moment at or after `from` when the gateway's view
    /// satisfied `pred`, relative to `from`.
    pub fn first(&self, from: Duration, pred: impl Fn(&Seen) -> bool) -> Option<Duration> {
        self.seen
            .iter()
            .find(|s| s.at >= from && pred(s))
            .map(|s| s.at - from)
    }

    /// The result; the appliance stops here.
    pub(super) fn into_result(self) -> ScenarioResult {
        self.r
    }

    /// Node `n` was hit at `t.at` and its fault lifted at `t.lifted`:
    /// detection (fault → the gateway no longer has it up) and recovery
    /// (fault → up again after the lift).
    pub fn node_fault(&mut self, n: usize, t: Times) {
        self.r.detection_ms = Finished::ms(self.first(t.at, |x| x.health[n] != "up"));
        let back = self.first(t.lifted, |x| x.health[n] == "up");
        self.r.recovery_ms = Finished::ms(back.map(|d| d + (t.lifted - t.at)));
    }

    pub fn zero_failed(&mut self) {
        let failed = self.r.failed;
        self.r
            .bound(failed == 0, format!("{failed} requests failed (bound: 0)"));
    }

    /// Failures only among requests that were under way when the fault
    /// struck or before the gateway could detect it, none slower than the
    /// detection bound allows, and the detection itself within the bound.
    pub fn detection_bounds(&mut self, fault_at: Duration, bound: Duration, slack: Duration) {
        let late: Vec<_> = self
            .out
            .records
            .iter()
            .filter(|r| !r.ok && r.start > fault_at + bound)
            .collect();
        self.r.bound(
            late.is_empty(),
            format!(
                "{} requests sent later than the detection bound ({} ms) after the fault failed",
                late.len(),
                bound.as_millis()
            ),
        );
        let limit = bound + slack;
        let max = Duration::from_secs_f64(self.r.max_ms / 1000.0);
        self.r.bound(
            max <= limit,
            format!(
                "slowest request {} ms (bound {} ms)",
                max.as_millis(),
                limit.as_millis()
            ),
        );
        match self.r.detection_ms {
            Some(ms) => self.r.bound(
                Duration::from_secs_f64(ms / 1000.0) <= bound + Duration::from_millis(250),
                format!(
                    "detected after {ms:.0} ms (bound {} ms + 250 ms polling)",
                    bound.as_millis()
                ),
            ),
            None => self.r.bound(false, "the gateway never took the node out"),
        }
    }

    /// The store was out from `at` to `back`: failures only among requests
    /// still under way at `at` and sent before `back` + 1 s, each `clear`,
    /// and tickets issued again after it. Detection and recovery from the
    /// failed requests.
    pub fn store_outage(
        &mut self,
        at: Duration,
        back: Duration,
        what: &str,
        clear: impl Fn(&load::Record) -> bool,
        clear_text: &str,
    ) {
        let settle = Duration::from_secs(1);
        let failed: Vec<_> = self.out.records.iter().filter(|r| !r.ok).cloned().collect();
        self.r.detection_ms = Finished::ms(failed.first().map(|r| r.start.saturating_sub(at)));
        self.r.recovery_ms = Finished::ms(failed.last().map(|r| r.end().saturating_sub(at)));
        self.r.bound(
            failed
                .iter()
                .all(|r| r.end() >= at && r.start <= back + settle),
            format!("failures outside {what} (+{} s)", settle.as_secs()),
        );
        self.r.bound(
            failed.iter().all(&clear),
            format!("a failure was not {clear_text}"),
        );
        let issued_after = self
            .out
            .records
            .iter()
            .any(|r| r.ok && r.kind == load::Kind::Issue && r.start > back + settle);
        self.r
            .bound(issued_after, format!("no ticket was issued after {what}"));
    }

    pub fn ms(d: Option<Duration>) -> Option<f64> {
        d.map(|d| (d.as_secs_f64() * 1000.0).round())
    }
}

/// Polls the gateway's status every 25 ms until stopped.
async fn watch(admin: String, t0: Instant, stop: Arc<AtomicBool>) -> Vec<Seen> {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    let mut seen = Vec::new();
    // Bounded like the load: stopped by the scenario, at most 10 minutes.
    while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(600) {
        let at = t0.elapsed();
        if let Ok(r) = c
            .get(format!("{admin}/v1/status"))
            .bearer_auth(crate::appliance::ADMIN_TOKEN)
            .send()
            .await
        {
            if let Ok(v) = r.json::<Value>().await {
                seen.push(Seen::from(at, &v));
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    seen
}
