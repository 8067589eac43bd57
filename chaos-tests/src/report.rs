//! What a scenario measured, its bounds, and the table and JSON it prints.

use crate::load::{Kind, Record};
use crate::tickets::Audit;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// One scenario's figures.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ScenarioResult {
    pub scenario: String,
    pub fault: String,
    pub sent: usize,
    pub failed: usize,
    /// `kind: why` → count, e.g. `issue: status 503 unavailable`.
    pub failed_by_kind: BTreeMap<String, usize>,
    /// Requests the gateway sent again to the twin (its
    /// `twinport_retries_total` during the scenario).
    pub retried_by_gateway: u64,
    /// Kiosk touches sent again with the same key after a failure.
    pub resent_by_kiosks: usize,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The slowest request: its kind, when it was sent and how it ended.
    pub slowest: String,
    /// From the fault to the gateway noticing it (node down, traffic
    /// moved) or, where the gateway has nothing to notice, to the first
    /// failed request.
    pub detection_ms: Option<f64>,
    /// From the fault to full service again (the node back up, or the
    /// last failed request).
    pub recovery_ms: Option<f64>,
    pub tickets: Audit,
    /// Facts the scenario checked besides the figures (config generation,
    /// versions, the error a client saw...).
    pub notes: Vec<String>,
    /// Bounds this run broke; empty means it passed.
    pub violations: Vec<String>,
}

impl ScenarioResult {
    /// Fills the request figures from the records.
    pub fn count(&mut self, records: &[Record]) {
        self.sent = records.len();
        self.failed = records.iter().filter(|r| !r.ok).count();
        for r in records.iter().filter(|r| !r.ok) {
            let why = r.failure.clone().unwrap_or_else(|| "?".into());
            *self
                .failed_by_kind
                .entry(format!("{}: {why}", r.kind.as_str()))
                .or_default() += 1;
        }
        self.resent_by_kiosks = records
            .iter()
            .filter(|r| r.kind == Kind::Issue && r.resend)
            .count();
        let mut lat: Vec<Duration> = records.iter().map(|r| r.latency).collect();
        lat.sort();
        let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
        if let Some(r) = records.iter().max_by_key(|r| r.latency) {
            self.slowest = format!(
                "{} sent at {} ms: {}",
                r.kind.as_str(),
                r.start.as_millis(),
                r.failure
                    .clone()
                    .unwrap_or_else(|| format!("status {}", r.status))
            );
        }
        if let Some(max) = lat.last() {
            self.max_ms = ms(*max);
            let i = ((lat.len() as f64) * 0.99).ceil() as usize;
            self.p99_ms = ms(lat[i.clamp(1, lat.len()) - 1]);
        }
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Records a broken bound unless `ok`.
    pub fn bound(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.violations.push(what.into());
        }
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}"))
}

/// The results as a fixed-width text table.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>6} {:>6} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>5} {:>5} {:>7}  result",
        "scenario",
        "sent",
        "failed",
        "retried",
        "resent",
        "p99 ms",
        "max ms",
        "detect",
        "recover",
        "tickets",
        "lost",
        "dbl",
        "unacked"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>6} {:>7} {:>6} {:>8.1} {:>8.1} {:>8} {:>8} {:>7} {:>5} {:>5} {:>7}  {}",
            r.scenario,
            r.sent,
            r.failed,
            r.retried_by_gateway,
            r.resent_by_kiosks,
            r.p99_ms,
            r.max_ms,
            opt_ms(r.detection_ms),
            opt_ms(r.recovery_ms),
            format!("{}/{}", r.tickets.issued, r.tickets.acknowledged),
            r.tickets.lost,
            r.tickets.doubled,
            r.tickets.unacknowledged,
            if r.passed() { "ok" } else { "FAILED" }
        );
    }
    for r in results {
        if !r.failed_by_kind.is_empty() {
            let kinds: Vec<String> = r
                .failed_by_kind
                .iter()
                .map(|(k, n)| format!("{n} × {k}"))
                .collect();
            let _ = writeln!(out, "  {}: failed {}", r.scenario, kinds.join(", "));
        }
        for v in &r.violations {
            let _ = writeln!(
                out,
                "  {}: BOUND BROKEN: {v} (slowest: {})",
                r.scenario, r.slowest
            );
        }
    }
    out
}

/// The results as a Markdown table (for RESULTS.md).
pub fn markdown(results: &[ScenarioResult]) -> String {
    let mut out = String::from(
        "| scenario | fault | sent | failed | retried (gateway) | resent (kiosks) | p99 ms | max ms | detected ms | recovered ms | tickets issued / acknowledged | lost | doubled | result |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} / {} | {} | {} | {} |",
            r.scenario,
            r.fault,
            r.sent,
            r.failed,
            r.retried_by_gateway,
            r.resent_by_kiosks,
            r.p99_ms,
            r.max_ms,
            opt_ms(r.detection_ms),
            opt_ms(r.recovery_ms),
            r.tickets.issued,
            r.tickets.acknowledged,
            r.tickets.lost,
            r.tickets.doubled,
            if r.passed() { "ok" } else { "**failed**" }
        );
    }
    let mut details = String::new();
    for r in results {
        let mut lines: Vec<String> = r
            .failed_by_kind
            .iter()
            .map(|(k, n)| format!("failed {n} × {k}"))
            .collect();
        lines.extend(r.notes.iter().cloned());
        lines.extend(
            r.violations
                .iter()
                .map(|v| format!("**bound broken**: {v}")),
        );
        if !lines.is_empty() {
            let _ = writeln!(details, "- `{}`: {}", r.scenario, lines.join("; "));
        }
    }
    if !details.is_empty() {
        out.push('\n');
        out.push_str(&details);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ms: u64, ok: bool) -> Record {
        Record {
            kind: Kind::Issue,
            start: Duration::ZERO,
            latency: Duration::from_millis(ms),
            status: if ok { 201 } else { 503 },
            ok,
            failure: (!ok).then(|| "status 503 unavailable".into()),
            resend: !ok,
        }
    }

    #[test]
    fn figures_from_records() {
        let mut records: Vec<Record> = (1..=100).map(|ms| rec(ms, true)).collect();
        records.push(rec(500, false));
        let mut r = ScenarioResult::default();
        r.count(&records);
        assert_eq!((r.sent, r.failed, r.resent_by_kiosks), (101, 1, 1));
        assert_eq!(r.max_ms, 500.0);
        assert_eq!(r.p99_ms, 100.0);
        assert_eq!(r.failed_by_kind["issue: status 503 unavailable"], 1);
        r.bound(r.failed == 0, "zero failed requests");
        assert!(!r.passed());
        assert!(table(&[r.clone()]).contains("BOUND BROKEN: zero failed requests"));
        assert!(markdown(&[r]).contains("**failed**"));
    }
}
