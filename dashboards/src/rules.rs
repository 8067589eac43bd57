//! Prometheus rule files: recording rules and alerts, read as Prometheus
//! reads them (YAML `groups:` of `rules:`), and linted for what on-call
//! people need: every alert with an explicit `for:`, a `severity` of
//! `critical` (pages at any hour) or `warning` (working hours), a summary,
//! a description, and a runbook link to a file that exists; recording
//! rules named `level:metric:operations`; every metric name known.

use crate::{promql, LoadError, MetricNames, Problem, Query, QueryKind};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub const SEVERITIES: [&str; 2] = ["critical", "warning"];

#[derive(Debug, Deserialize)]
pub struct RuleFile {
    #[serde(skip)]
    pub path: PathBuf,
    pub groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub interval: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub alert: Option<String>,
    #[serde(default)]
    pub record: Option<String>,
    pub expr: String,
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    #[serde(default)]
    pub keep_firing_for: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Every rule file under `dir/alerts` and `dir/rules`.
pub fn load_all(dir: &Path) -> Result<Vec<RuleFile>, LoadError> {
    let mut out = Vec::new();
    for sub in ["rules", "alerts"] {
        for p in crate::files(&dir.join(sub), &["yml", "yaml"])? {
            out.push(RuleFile::load(&p)?);
        }
    }
    Ok(out)
}

impl RuleFile {
    pub fn load(path: &Path) -> Result<RuleFile, LoadError> {
        let text = crate::read(path)?;
        let mut f: RuleFile = serde_yaml::from_str(&text).map_err(|source| LoadError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
        f.path = path.to_path_buf();
        Ok(f)
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.groups.iter().flat_map(|g| g.rules.iter())
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Rule> {
        self.rules().filter(|r| r.alert.is_some())
    }

    /// Names of the recording rules.
    pub fn recorded(&self) -> BTreeSet<String> {
        self.rules().filter_map(|r| r.record.clone()).collect()
    }

    /// Queries that must return data when the metrics exist: recording
    /// rules whole, alerts cut into their signals.
    pub fn queries(&self) -> Vec<Query> {
        let file = self.name();
        let mut out = Vec::new();
        for r in self.rules() {
            if let Some(rec) = &r.record {
                out.push(Query {
                    origin: format!("{file}: record {rec}"),
                    expr: r.expr.clone(),
                    kind: QueryKind::Record,
                });
            }
            if let Some(alert) = &r.alert {
                for (i, s) in promql::signals(&r.expr).into_iter().enumerate() {
                    out.push(Query {
                        origin: format!("{file}: alert {alert} part {}", i + 1),
                        expr: s,
                        kind: QueryKind::AlertSignal,
                    });
                }
            }
        }
        out
    }

    /// The problems of this file; runbook links are paths from `repo`.
    pub fn lint(&self, repo: &Path, names: &MetricNames) -> Vec<Problem> {
        let file = self.name();
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for r in self.rules() {
            let (at, mut bad) = match (&r.alert, &r.record) {
                (Some(a), None) => (format!("{file}: alert {a}"), Vec::new()),
                (None, Some(rec)) => {
                    let mut bad = Vec::new();
                    if rec.split(':').count() != 3 {
                        bad.push(format!(
                            "recording rule {rec} is not named level:metric:operations"
                        ));
                    }
                    (format!("{file}: record {rec}"), bad)
                }
                _ => (
                    format!("{file}: rule {:?}", r.expr),
                    vec!["a rule needs exactly one of alert and record".to_string()],
                ),
            };
            if let Some(a) = &r.alert {
                if !seen.insert(a.clone()) {
                    bad.push("alert name used twice".into());
                }
                if !a.starts_with("Twinport") {
                    bad.push("alert names start with Twinport".into());
                }
                if r.for_.is_none() {
                    bad.push("no for: (write for: 0s for an alert on an event)".into());
                }
                match r.labels.get("severity").map(String::as_str) {
                    Some(s) if SEVERITIES.contains(&s) => {}
                    other => bad.push(format!("severity {other:?} is not one of {SEVERITIES:?}")),
                }
                for key in ["summary", "description", "runbook_url"] {
                    if r.annotations.get(key).is_none_or(|v| v.trim().is_empty()) {
                        bad.push(format!("no {key} annotation"));
                    }
                }
                if let Some(url) = r.annotations.get("runbook_url") {
                    if !url.starts_with("docs/runbooks/") || !repo.join(url).is_file() {
                        bad.push(format!("runbook {url} is not a file under docs/runbooks/"));
                    }
                }
                if promql::signals(&r.expr).is_empty() {
                    bad.push("the expression watches no series".into());
                }
            }
            for n in promql::metric_names(&r.expr) {
                if let Some(why) = names.check(&n) {
                    bad.push(why);
                }
            }
            problems.extend(bad.into_iter().map(|what| Problem {
                at: at.clone(),
                what,
            }));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> RuleFile {
        let mut f: RuleFile = serde_yaml::from_str(yaml).unwrap();
        f.path = PathBuf::from("t.yml");
        f
    }

    fn repo() -> PathBuf {
        // The workspace root: docs/runbooks/ is there.
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    const GOOD: &str = "
groups:
  - name: g
    rules:
      - record: instance:twinport_requests:rate5m
        expr: sum by (instance) (rate(twinport_requests_total[5m]))
      - alert: TwinportX
        expr: instance:twinport_requests:rate5m > 1 and on (instance) up == 0
        for: 1m
        labels: { severity: warning }
        annotations: { summary: s, description: d, runbook_url: docs/runbooks/failover.md }
";

    fn names(f: &RuleFile) -> MetricNames {
        MetricNames {
            exported: None,
            recorded: f.recorded(),
        }
    }

    #[test]
    fn a_good_file_passes_and_yields_its_queries() {
        let f = file(GOOD);
        assert_eq!(f.lint(&repo(), &names(&f)), vec![]);
        let q: Vec<String> = f.queries().into_iter().map(|q| q.expr).collect();
        assert_eq!(
            q,
            [
                "sum by (instance) (rate(twinport_requests_total[5m]))",
                "instance:twinport_requests:rate5m",
                "up"
            ]
        );
    }

    fn problems(yaml: &str) -> Vec<String> {
        let f = file(yaml);
        f.lint(&repo(), &names(&f))
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn missing_pieces_are_reported() {
        let has = |p: &[String], what: &str| {
            assert!(p.iter().any(|p| p.contains(what)), "{what} not in {p:?}")
        };
        let p = problems(
            &GOOD
                .replace("        for: 1m\n", "")
                .replace("warning", "page"),
        );
        has(&p, "no for:");
        has(&p, "severity Some(\"page\")");
        let p = problems(&GOOD.replace("failover.md", "nope.md"));
        has(&p, "runbook docs/runbooks/nope.md");
        let p = problems(&GOOD.replace(
            "record: instance:twinport_requests:rate5m",
            "record: requests_rate",
        ));
        has(&p, "level:metric:operations");
        has(
            &p,
            "instance:twinport_requests:rate5m is not the name of a recording rule",
        );
    }
}
