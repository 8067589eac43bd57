//! The scenarios: one fault each, under load, with the bounds it must keep.
//!
//! Every scenario starts a fresh appliance, runs the load, waits
//! `warmup`, injects its fault, lifts it after `hold` (where a fault has
//! a duration), waits for the appliance to recover, lets the load run
//! `cooldown` more, stops it, and then checks the store against what the
//! kiosks printed. Every scenario asserts: no ticket lost, none doubled,
//! none issued that a kiosk did not print, and a real load ran. Each adds
//! its own bounds (see [`SCENARIOS`]).

use crate::appliance::{node_field, Appliance, HealthCheck, Options, Store, Variant, BRANCH};
use crate::fault::Fault;
use crate::load::{self, Outcome, Plan};
use crate::report::ScenarioResult;
use crate::tickets;
use anyhow::Context;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every scenario: name and the fault it injects.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "crash-primary",
        "kill -9 of the primary's app and agent, node restarted after the hold",
    ),
    (
        "crash-standby",
        "kill -9 of the standby's app and agent, node restarted after the hold",
    ),
    (
        "hang-primary",
        "SIGSTOP of the primary's app and agent, SIGCONT after the hold",
    ),
    (
        "slow-primary",
        "60 ms added to every chunk both ways on the primary's links",
    ),
    (
        "blackhole-primary",
        "the primary's links forward nothing and close nothing, then heal",
    ),
    (
        "flapping",
        "the primary's readiness fails and passes every 700 ms",
    ),
    (
        "drain-primary",
        "twinctl drain of the primary, in flight reaches 0, undrain",
    ),
    ("switchover", "twinctl switchover to the standby"),
    (
        "reload-100",
        "100 config reloads alternating two valid configs",
    ),
    ("invalid-config", "10 invalid configs pushed and reloaded"),
    (
        "binary-upgrade",
        "a new gateway process takes the sockets over (SIGQUIT)",
    ),
    (
        "rolling-upgrade",
        "twinctl rolling-upgrade of both nodes to 2.0.0",
    ),
    (
        "pg-restart",
        "PostgreSQL restarted (fast) while tickets are issued",
    ),
    (
        "disk-full",
        "the SQLite file's tmpfs filled up, freed after the hold",
    ),
];

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The long version (more clients, longer holds).
    pub full: bool,
    pub bin_dir: PathBuf,
    pub health: HealthCheck,
}

impl Settings {
    fn warmup(&self) -> Duration {
        secs(if self.full { 3.0 } else { 1.0 })
    }
    fn hold(&self) -> Duration {
        secs(if self.full { 5.0 } else { 2.0 })
    }
    /// A hang or blackhole lasts longer than any bound it could meet
    /// without detection, so a gateway that does not detect fails.
    fn long_hold(&self) -> Duration {
        secs(if self.full { 8.0 } else { 4.0 })
    }
    fn cooldown(&self) -> Duration {
        secs(if self.full { 3.0 } else { 1.0 })
    }
    fn plan(&self) -> Plan {
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

/// What the gateway reported at one moment.
#[derive(Debug, Clone)]
struct Seen {
    at: Duration,
    primary: Option<String>,
    health: [String; 2],
    admin: [String; 2],
    version: [String; 2],
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
struct Running {
    app: Appliance,
    t0: Instant,
    stop: Arc<AtomicBool>,
    load: tokio::task::JoinHandle<Outcome>,
    monitor: tokio::task::JoinHandle<Vec<Seen>>,
    retries_before: f64,
    _stop_on_drop: StopOnDrop,
}

impl Running {
    async fn start(
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

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Waits until the gateway's status satisfies `pred` (bounded).
    async fn wait_until(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> bool {
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

    /// Node `n` was hit at `at` and its fault lifted at `lifted`: waits
    /// (up to `wait`) for the gateway to see it up again, lets the load run
    /// the cooldown, and finishes with detection (fault → the gateway no
    /// longer has it up) and recovery (fault → up again after the lift).
    async fn finish_node_fault(
        self,
        s: &Settings,
        n: usize,
        (at, lifted): (Duration, Duration),
        wait: Duration,
        (name, fault): (&str, &str),
    ) -> anyhow::Result<Finished> {
        let node = self.app.nodes[n].name;
        self.wait_until(wait, |st| node_field(st, node, "health") == Some("up"))
            .await;
        tokio::time::sleep(s.cooldown()).await;
        let mut f = self.finish(name, fault).await?;
        f.r.detection_ms = Finished::ms(f.first(at, |x| x.health[n] != "up"));
        let back = f.first(lifted, |x| x.health[n] == "up");
        f.r.recovery_ms = Finished::ms(back.map(|d| d + (lifted - at)));
        Ok(f)
    }

    /// Stops the load and the monitor; the common figures and bounds.
    async fn finish(self, name: &str, fault: &str) -> anyhow::Result<Finished> {
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
        Ok(Finished {
            r,
            out,
            seen,
            app: self.app,
        })
    }
}

/// Stops the load and the monitor when dropped: a scenario that ends
/// early (an error) leaves nothing hammering an appliance that is gone.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct Finished {
    r: ScenarioResult,
    out: Outcome,
    seen: Vec<Seen>,
    #[allow(dead_code)]
    app: Appliance,
}

impl Finished {
    /// The first moment at or after `from` when the gateway's view
    /// satisfied `pred`, relative to `from`.
    fn first(&self, from: Duration, pred: impl Fn(&Seen) -> bool) -> Option<Duration> {
        self.seen
            .iter()
            .find(|s| s.at >= from && pred(s))
            .map(|s| s.at - from)
    }

    fn zero_failed(&mut self) {
        let failed = self.r.failed;
        self.r
            .bound(failed == 0, format!("{failed} requests failed (bound: 0)"));
    }

    /// Failures only among requests that were under way when the fault
    /// struck or before the gateway could detect it, none slower than the
    /// detection bound allows, and the detection itself within the bound.
    fn detection_bounds(&mut self, fault_at: Duration, bound: Duration, slack: Duration) {
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
    fn store_outage(
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

    fn ms(d: Option<Duration>) -> Option<f64> {
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

fn sqlite() -> Store {
    Store::Sqlite(None)
}

/// Runs scenario `name`.
pub async fn run(name: &str, s: &Settings) -> anyhow::Result<ScenarioResult> {
    let fault = SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .with_context(|| format!("no scenario `{name}`"))?;
    let bound = s.health.detection_bound();
    let slack = Duration::from_millis(1000);
    match name {
        "crash-primary" | "crash-standby" => {
            let n = usize::from(name == "crash-standby");
            let mut run = Running::start(s, name, sqlite(), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let at = run.now();
            run.app.nodes[n].crash();
            tokio::time::sleep(s.hold()).await;
            let bin = s.bin_dir.clone();
            run.app.nodes[n].start_agent(&bin)?;
            let lifted = run.now();
            let mut f = run
                .finish_node_fault(s, n, (at, lifted), Duration::from_secs(30), (name, fault))
                .await?;
            f.zero_failed();
            f.r.bound(
                f.r.detection_ms.is_some(),
                "the gateway never saw the node down",
            );
            f.r.bound(f.r.recovery_ms.is_some(), "the node never came back up");
            Ok(f.r)
        }
        "hang-primary" | "blackhole-primary" => {
            let hang = name == "hang-primary";
            // PostgreSQL, as in production: a twin stopped inside a write
            // would hold a shared SQLite file's lock until it resumed
            // (RESULTS.md); PostgreSQL ends such a session after 500 ms.
            let db = crate::env::Database::create(name).await?;
            let run = Running::start(s, name, Store::Postgres(db.url.clone()), !hang).await?;
            tokio::time::sleep(s.warmup()).await;
            let at = run.now();
            if hang {
                run.app.nodes[0].signal("STOP");
            } else {
                run.app.nodes[0].set_link(Fault::Blackhole);
            }
            tokio::time::sleep(s.long_hold()).await;
            if hang {
                run.app.nodes[0].signal("CONT");
            } else {
                run.app.nodes[0].set_link(Fault::Pass);
            }
            let lifted = run.now();
            let mut f = run
                .finish_node_fault(s, 0, (at, lifted), Duration::from_secs(30), (name, fault))
                .await?;
            // A twin stopped inside a write holds the branch's row lock;
            // PostgreSQL frees it after IDLE_IN_TRANSACTION, and each of
            // the node's writes queued behind it may take it once more.
            let writers = (s.plan().kiosks + s.plan().desks) as u32;
            let stall = ticketing::store::IDLE_IN_TRANSACTION * writers;
            f.detection_bounds(at, bound, slack + stall);
            drop(f.app);
            db.drop_now().await;
            f.r.notes.push(format!(
                "detection bound from the health check: interval {} ms × (fall {} + 1) + timeout {} ms = {} ms; \
                 slowest request bound: that + {} ms slack + {} writers × {} ms (the store's lock timeout)",
                s.health.interval.as_millis(),
                s.health.fall,
                s.health.timeout.as_millis(),
                bound.as_millis(),
                slack.as_millis(),
                writers,
                ticketing::store::IDLE_IN_TRANSACTION.as_millis()
            ));
            Ok(f.r)
        }
        "slow-primary" => {
            let delay = Duration::from_millis(60);
            let run = Running::start(s, name, sqlite(), true).await?;
            tokio::time::sleep(s.warmup()).await;
            run.app.nodes[0].set_link(Fault::Delay(delay));
            tokio::time::sleep(s.hold()).await;
            run.app.nodes[0].set_link(Fault::Pass);
            tokio::time::sleep(s.cooldown()).await;
            let mut f = run.finish(name, fault).await?;
            f.zero_failed();
            let max = f.r.max_ms;
            f.r.bound(
                max >= (2 * delay).as_millis() as f64,
                format!("slowest request {max} ms: the added latency never showed"),
            );
            let moved = f.seen.iter().any(|x| x.primary.as_deref() != Some("a"));
            f.r.notes.push(format!(
                "the slow primary {} (a check's round trip stays under the 250 ms timeout)",
                if moved {
                    "lost its role"
                } else {
                    "kept its role"
                }
            ));
            Ok(f.r)
        }
        "flapping" => {
            let run = Running::start(s, name, sqlite(), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let at = run.now();
            let marker = run.app.nodes[0].flap_marker.clone();
            let end = Instant::now() + s.long_hold();
            let mut down = false;
            while Instant::now() < end {
                down = !down;
                if down {
                    std::fs::write(&marker, "")?;
                } else {
                    let _ = std::fs::remove_file(&marker);
                }
                // Longer than the gateway's fall × interval, so that it
                // sees every flap (shorter ones it filters out).
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            let _ = std::fs::remove_file(&marker);
            let lifted = run.now();
            // Flap damping may keep the node out for a while: wait for it.
            let mut f = run
                .finish_node_fault(s, 0, (at, lifted), Duration::from_secs(60), (name, fault))
                .await?;
            let downs = f
                .seen
                .windows(2)
                .filter(|w| w[0].health[0] == "up" && w[1].health[0] != "up")
                .count();
            f.r.notes
                .push(format!("node a went down {downs} times at the gateway"));
            f.zero_failed();
            f.r.bound(
                f.r.detection_ms.is_some(),
                "the gateway never saw the flapping node down",
            );
            Ok(f.r)
        }
        "drain-primary" => {
            let run = Running::start(s, name, sqlite(), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let at = run.now();
            let (code, out) = run.app.twinctl(&["drain", "a"]);
            let drained = run
                .wait_until(Duration::from_secs(20), |st| {
                    st["nodes"][0]["inflight"].as_i64() == Some(0)
                        && node_field(st, "a", "admin") == Some("drain")
                })
                .await;
            tokio::time::sleep(s.hold()).await;
            let undrain_at = run.now();
            let (code2, out2) = run.app.twinctl(&["undrain", "a"]);
            tokio::time::sleep(s.cooldown()).await;
            let mut f = run.finish(name, fault).await?;
            f.r.bound(code == Some(0), format!("twinctl drain: {out}"));
            f.r.bound(code2 == Some(0), format!("twinctl undrain: {out2}"));
            f.r.bound(drained, "node a never reached 0 requests in flight");
            f.r.detection_ms = Finished::ms(f.first(at, |x| x.admin[0] == "drain"));
            f.r.recovery_ms = Finished::ms(
                f.first(undrain_at, |x| x.admin[0] == "active")
                    .map(|d| d + (undrain_at - at)),
            );
            f.zero_failed();
            Ok(f.r)
        }
        "switchover" => {
            let run = Running::start(s, name, sqlite(), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let at = run.now();
            let (code, out) = run.app.twinctl(&["switchover", "b"]);
            tokio::time::sleep(s.hold()).await;
            let mut f = run.finish(name, fault).await?;
            f.r.bound(code == Some(0), format!("twinctl switchover: {out}"));
            f.r.detection_ms = Finished::ms(f.first(at, |x| x.primary.as_deref() == Some("b")));
            f.r.bound(f.r.detection_ms.is_some(), "b never became primary");
            f.zero_failed();
            Ok(f.r)
        }
        "reload-100" => {
            let run = Running::start(s, name, sqlite(), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let before = run.app.status().await?["config_generation"].as_u64();
            let mut refused = Vec::new();
            for i in 0..100 {
                let v = if i % 2 == 0 {
                    Variant::Second
                } else {
                    Variant::First
                };
                run.app.write_gateway_config(v)?;
                let (code, body) = run.app.admin_call("POST", "/v1/config/reload").await?;
                if code != 200 {
                    refused.push(format!("reload {i}: {code} {body}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let after = run.app.status().await?["config_generation"].as_u64();
            tokio::time::sleep(s.cooldown()).await;
            let mut f = run.finish(name, fault).await?;
            f.r.bound(refused.is_empty(), format!("reloads refused: {refused:?}"));
            f.r.bound(
                before.zip(after).is_some_and(|(b, a)| a == b + 100),
                format!("config generation {before:?} → {after:?}, expected +100"),
            );
            f.r.notes.push(format!(
                "config generation {} → {}",
                before.unwrap_or(0),
                after.unwrap_or(0)
            ));
            f.zero_failed();
            Ok(f.r)
        }
        "invalid-config" => {
            let run = Running::start(s, name, sqlite(), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let good = run.app.gateway_yaml(Variant::First);
            let before = run.app.status().await?["config_generation"].as_u64();
            let broken: Vec<(&str, String)> = vec![
                (
                    "mode",
                    good.replace("mode: active-standby", "mode: sideways"),
                ),
                (
                    "health_check.interval",
                    good.replace("interval: 250ms", "interval: soon"),
                ),
                (
                    "health_check.interval",
                    good.replace("interval: 250ms", "interval: 1ms"),
                ),
                (
                    "failback.hold_down",
                    good.replace("hold_down: 30s", "hold_down: -1s"),
                ),
                ("primary", good.replace("primary: a", "primary: c")),
                (
                    "passive.error_limit",
                    good.replace("error_limit: 5", "error_limit: many"),
                ),
                ("health_check.rise", good.replace("rise: 2", "rise: 0")),
                (
                    "timeouts.connect",
                    good.replace("connect: 500ms", "connect: 0ms"),
                ),
                ("nodes", good.replace("  - name: b\n", "  - name: a\n")),
                ("surprise", good.clone() + "surprise: true\n"),
            ];
            let mut wrong = Vec::new();
            for (field, text) in &broken {
                crate::appliance::write_atomically(&run.app.gateway_config, text)?;
                let (code, body) = run.app.admin_call("POST", "/v1/config/reload").await?;
                let named = body.to_string().contains(field);
                if code != 422 || !named {
                    wrong.push(format!("{field}: {code} {body}"));
                }
            }
            run.app.write_gateway_config(Variant::First)?;
            let after = run.app.status().await?["config_generation"].as_u64();
            tokio::time::sleep(s.cooldown()).await;
            let mut f = run.finish(name, fault).await?;
            f.r.bound(
                wrong.is_empty(),
                format!("invalid configs not refused with the field named: {wrong:?}"),
            );
            f.r.bound(
                before == after,
                format!("config generation moved: {before:?} → {after:?}"),
            );
            f.r.notes.push(format!(
                "{} invalid configs refused (422, field named), generation unchanged",
                broken.len()
            ));
            f.zero_failed();
            Ok(f.r)
        }
        "binary-upgrade" => {
            let mut run = Running::start(s, name, sqlite(), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let mut cmd = std::process::Command::new(s.bin_dir.join("gateway"));
            cmd.arg("--config")
                .arg(&run.app.gateway_config)
                .arg("--upgrade");
            let log = run.app.dir().join("gateway-new.log");
            let new = devtools::Proc::spawn("gateway (new)", cmd, Some(&log));
            tokio::time::sleep(Duration::from_millis(500)).await;
            let at = run.now();
            run.app.gateway.signal("QUIT");
            let exited =
                tokio::task::block_in_place(|| run.app.gateway.wait_exit(Duration::from_secs(20)));
            let gone = run.now();
            let pid_file = run.app.gateway_pid_file();
            let new_pid = new.pid();
            let moved = devtools::eventually(Duration::from_secs(5), || {
                std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == new_pid.to_string())
            });
            run.app.gateway = new;
            tokio::time::sleep(s.cooldown()).await;
            let mut f = run.finish(name, fault).await?;
            f.r.bound(exited.is_some(), "the old gateway did not exit");
            f.r.bound(moved, "the new gateway did not take the pid file");
            f.r.recovery_ms = Finished::ms(Some(gone - at));
            f.r.notes
                .push("recovered = the old process exited; the new one served throughout".into());
            f.zero_failed();
            Ok(f.r)
        }
        "rolling-upgrade" => {
            let run = Running::start(s, name, sqlite(), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let at = run.now();
            let a = &run.app;
            let agents: Vec<String> = a
                .nodes
                .iter()
                .map(|n| format!("{}=http://{}", n.name, n.control))
                .collect();
            let release = s.bin_dir.join("ticketing").display().to_string();
            let token = a.dir().join("agent.token").display().to_string();
            let (code, out) = tokio::task::block_in_place(|| {
                a.twinctl(&[
                    "rolling-upgrade",
                    "--release",
                    &release,
                    "--version",
                    "2.0.0",
                    "--agent",
                    &agents[0],
                    "--agent",
                    &agents[1],
                    "--agent-token-file",
                    &token,
                    "--step-timeout",
                    "60s",
                ])
            });
            let done = run.now();
            tokio::time::sleep(s.cooldown()).await;
            let mut f = run.finish(name, fault).await?;
            f.r.bound(
                code == Some(0),
                format!("twinctl rolling-upgrade exited {code:?}: {out}"),
            );
            let last = f.seen.last().cloned();
            f.r.bound(
                last.as_ref()
                    .is_some_and(|x| x.version == ["2.0.0", "2.0.0"]),
                format!(
                    "versions at the gateway at the end: {:?}",
                    last.map(|x| x.version)
                ),
            );
            f.r.recovery_ms = Finished::ms(Some(done - at));
            f.r.notes
                .push("recovered = both nodes upgraded, verified and back in service".into());
            f.zero_failed();
            Ok(f.r)
        }
        "pg-restart" => {
            let dir = devtools::TempDir::new("chaos-pg");
            let pg = tokio::task::block_in_place(|| crate::env::Postgres::start(dir.path()))?;
            let run = Running::start(s, name, Store::Postgres(pg.url()), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let at = run.now();
            tokio::task::block_in_place(|| pg.restart())?;
            let back = run.now();
            tokio::time::sleep(s.hold()).await;
            let mut f = run.finish(name, fault).await?;
            f.r.notes.push(format!(
                "PostgreSQL was down for {} ms",
                (back - at).as_millis()
            ));
            f.store_outage(
                at,
                back,
                "the restart",
                |r| r.status == 503,
                "a clear 503 (the store is unavailable)",
            );
            drop(f.app);
            drop(pg);
            Ok(f.r)
        }
        "disk-full" => {
            let dir = devtools::TempDir::new("chaos-disk");
            let disk = crate::env::SmallDisk::mount(&dir.path().join("disk"), 16)?;
            let run = Running::start(s, name, Store::Sqlite(Some(disk.dir.clone())), false).await?;
            tokio::time::sleep(s.warmup()).await;
            let at = run.now();
            let filled = disk.fill();
            tokio::time::sleep(s.hold()).await;
            disk.free();
            let freed = run.now();
            tokio::time::sleep(s.hold()).await;
            let mut f = run.finish(name, fault).await?;
            f.r.notes
                .push(format!("{} KiB written to fill the disk", filled / 1024));
            f.r.bound(
                f.r.failed > 0,
                "no request failed: the disk never filled up",
            );
            f.store_outage(
                at,
                freed,
                "the full disk",
                |r| r.failure.as_deref() == Some("status 507 storage_full"),
                "the clear 507 storage_full",
            );
            drop(f.app);
            drop(disk);
            Ok(f.r)
        }
        other => anyhow::bail!("scenario `{other}` is listed but not implemented"),
    }
}
