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

/// One row's cells: scenario, sent, failed, retried, resent, p99, max,
/// detection, recovery, tickets issued/acknowledged, lost, doubled,
/// unacknowledged, result.
fn cells(r: &ScenarioResult) -> [String; 14] {
    [
        r.scenario.clone(),
        r.sent.to_string(),
        r.failed.to_string(),
        r.retried_by_gateway.to_string(),
        r.resent_by_kiosks.to_string(),
        format!("{:.1}", r.p99_ms),
        format!("{:.1}", r.max_ms),
        opt_ms(r.detection_ms),
        opt_ms(r.recovery_ms),
        format!("{}/{}", r.tickets.issued, r.tickets.acknowledged),
        r.tickets.lost.to_string(),
        r.tickets.doubled.to_string(),
        r.tickets.unacknowledged.to_string(),
        if r.passed() { "ok" } else { "FAILED" }.to_string(),
    ]
}

const HEADERS: [&str; 14] = [
    "scenario",
    "sent",
    "failed",
    "retried",
    "resent",
    "p99 ms",
    "max ms",
    "detect ms",
    "recover ms",
    "tickets",
    "lost",
    "doubled",
    "unacked",
    "result",
];

/// The results as a fixed-width text table, then failures and broken bounds.
pub fn table(results: &[ScenarioResult]) -> String {
    let rows: Vec<[String; 14]> = results.iter().map(cells).collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([HEADERS[i].len()])
            .max()
            .unwrap_or(0)
    };
    let line = |cols: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cols.iter().enumerate() {
            let pad = width(i).saturating_sub(c.chars().count());
            if i == 0 || i == 13 {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            } else {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            }
            l.push_str("  ");
        }
        l.trim_end().to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(HEADERS.to_vec()));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
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

/// The results as a Markdown table, then per scenario its fault, failures,
/// notes and broken bounds (for RESULTS.md).
pub fn markdown(results: &[ScenarioResult]) -> String {
    let mut out = format!("| {} |\n|", HEADERS.join(" | "));
    for i in 0..HEADERS.len() {
        out.push_str(if i == 0 || i == 13 {
            " --- |"
        } else {
            " ---: |"
        });
    }
    out.push('\n');
    for r in results {
        let mut c = cells(r);
        if !r.passed() {
            c[13] = "**FAILED**".into();
        }
        let _ = writeln!(out, "| {} |", c.join(" | "));
    }
    out.push('\n');
    for r in results {
        let mut lines = vec![r.fault.clone()];
        lines.extend(
            r.failed_by_kind
                .iter()
                .map(|(k, n)| format!("failed {n} × {k}")),
        );
        lines.extend(r.notes.iter().cloned());
        lines.push(format!("slowest: {}", r.slowest));
        lines.extend(
            r.violations
                .iter()
                .map(|v| format!("**bound broken**: {v}")),
        );
        let _ = writeln!(out, "- `{}`: {}", r.scenario, lines.join("; "));
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
        assert!(markdown(&[r]).contains("**FAILED**"));
    }
}
