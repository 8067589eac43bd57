//! Checks of the Twinport Grafana dashboards (`dashboards/grafana/`) and
//! Prometheus rules (`dashboards/alerts/`, `dashboards/rules/`).
//!
//! Grafana is not needed: a dashboard is JSON whose queries are PromQL, so
//! the checks read the JSON ([`dashboard`]), the rule files ([`rules`]),
//! the metric names the appliance exports ([`MetricNames`]), and leave
//! PromQL's grammar to Prometheus' own `promtool` ([`promtool`]). The
//! `dashboard-lint` binary runs them all; the tests run them too, and one
//! of them asks a real Prometheus scraping the real appliance whether
//! every query returns data.
#![forbid(unsafe_code)]

pub mod dashboard;
pub mod promql;
pub mod promtool;
pub mod rules;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Something wrong with a dashboard or a rule, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File, and inside it the panel, target or rule.
    pub at: String,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

/// A file that could not be read as a dashboard or rule file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} is not a valid rule file: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },
}

pub(crate) fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Files of `dir` ending in `ext`, sorted.
pub(crate) fn files(dir: &Path, ext: &[&str]) -> Result<Vec<PathBuf>, LoadError> {
    let rd = std::fs::read_dir(dir).map_err(|source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| ext.contains(&e))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The metric names queries may use.
#[derive(Debug, Clone, Default)]
pub struct MetricNames {
    /// What the appliance exports, read from real `/metrics` text; `None`
    /// when no endpoint was read (then only the `twinport_` prefix is
    /// checked).
    pub exported: Option<BTreeSet<String>>,
    /// Names of the recording rules.
    pub recorded: BTreeSet<String>,
}

impl MetricNames {
    /// Adds the names in a Prometheus text exposition: every sample's
    /// name (a histogram's `_bucket`, `_sum` and `_count` among them).
    pub fn add_exposition(&mut self, text: &str) {
        let set = self.exported.get_or_insert_with(BTreeSet::new);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !name.is_empty() {
                set.insert(name);
            }
        }
    }

    /// Why `name` may not be used, if it may not.
    pub fn check(&self, name: &str) -> Option<String> {
        if name == "up" || self.recorded.contains(name) {
            return None;
        }
        if name.contains(':') {
            return Some(format!("{name} is not the name of a recording rule"));
        }
        match &self.exported {
            Some(set) if !set.contains(name) => Some(format!(
                "{name} is not exported by the appliance (not in the /metrics text read)"
            )),
            Some(_) => None,
            None if !name.starts_with("twinport_") => Some(format!(
                "{name} is not a Twinport metric (twinport_ prefix)"
            )),
            None => None,
        }
    }
}

/// Every check on the folder `dir` (the repository's `dashboards/`), with
/// runbook links resolved against `repo`.
pub fn lint_all(dir: &Path, repo: &Path, names: &MetricNames) -> Result<Vec<Problem>, LoadError> {
    let boards = dashboard::load_dir(&dir.join("grafana"))?;
    let rule_files = rules::load_all(dir)?;
    let mut names = names.clone();
    for f in &rule_files {
        names.recorded.extend(f.recorded());
    }
    let mut problems = dashboard::lint_set(&boards, &names);
    for f in &rule_files {
        problems.extend(f.lint(repo, &names));
    }
    Ok(problems)
}

/// Every query of the folder: dashboards' panels, variables and
/// annotations, recording rules, and alerts cut into their signals.
pub fn all_queries(dir: &Path) -> Result<Vec<Query>, LoadError> {
    let mut queries = Vec::new();
    for d in dashboard::load_dir(&dir.join("grafana"))? {
        queries.extend(d.queries());
    }
    for f in rules::load_all(dir)? {
        queries.extend(f.queries());
    }
    Ok(queries)
}

/// Every check of the folder `dir`: [`lint_all`], then promtool — every
/// query parsed (in `scratch`), `check rules` on each rule file and
/// `test rules` on each `tests/*.yml`. Returns the problems as text and
/// how many queries were checked.
pub fn check(
    dir: &Path,
    repo: &Path,
    names: &MetricNames,
    scratch: &Path,
) -> Result<(Vec<String>, usize), LoadError> {
    let mut problems: Vec<String> = lint_all(dir, repo, names)?
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    let queries = all_queries(dir)?;
    if let Err(e) = promtool::check_queries(&queries, scratch) {
        problems.push(e.to_string());
    }
    let here = Path::new(".");
    for f in rules::load_all(dir)? {
        if let Err(e) = promtool::run(&["check", "rules", &f.path.to_string_lossy()], here) {
            problems.push(e.to_string());
        }
    }
    for t in files(&dir.join("tests"), &["yml", "yaml"])? {
        if let Err(e) = promtool::run(&["test", "rules", &t.to_string_lossy()], here) {
            problems.push(e.to_string());
        }
    }
    Ok((problems, queries.len()))
}

/// A query to evaluate: where it comes from and its PromQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub origin: String,
    pub expr: String,
    pub kind: QueryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A panel's target: must return data now.
    Panel,
    /// A template variable's metric: must return data now.
    Variable,
    /// An annotation: an event query, must return data at some time of
    /// the scenario.
    Annotation,
    /// A part of an alert's expression (see [`promql::signals`]): must
    /// return data now.
    AlertSignal,
    /// A recording rule's expression: must return data now.
    Record,
}
