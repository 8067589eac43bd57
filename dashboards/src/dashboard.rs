//! Grafana dashboards as JSON: their queries, and a lint of what Grafana's
//! file provisioning and operators rely on.
//!
//! Checked: valid JSON with a `uid` (unique, at most 40 characters) and a
//! title; a `datasource` template variable, and every panel, target,
//! annotation and variable querying through it (`${datasource}`), so that
//! the dashboards work with whatever the Prometheus data source is called;
//! unique panel ids; panels inside the 24-column grid; every target with a
//! non-empty `expr` and a refId unique in its panel; every `$variable` in
//! a query defined; every metric name one the appliance exports or a
//! recording rule.

use crate::{promql, LoadError, MetricNames, Problem, Query, QueryKind};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Variables Grafana defines itself.
const GLOBAL_VARIABLES: [&str; 4] = ["__rate_interval", "__interval", "__range", "__interval_ms"];

pub struct Dashboard {
    pub file: PathBuf,
    pub doc: Value,
}

/// Every `*.json` of `dir`.
pub fn load_dir(dir: &Path) -> Result<Vec<Dashboard>, LoadError> {
    crate::files(dir, &["json"])?
        .into_iter()
        .map(|p| Dashboard::load(&p))
        .collect()
}

fn is_datasource_variable(v: &Value) -> bool {
    v.get("uid").and_then(Value::as_str) == Some("${datasource}")
        && v.get("type").and_then(Value::as_str) == Some("prometheus")
}

fn title(p: &Value) -> &str {
    p.get("title").and_then(Value::as_str).unwrap_or("")
}

impl Dashboard {
    pub fn load(path: &Path) -> Result<Dashboard, LoadError> {
        let text = crate::read(path)?;
        let doc = serde_json::from_str(&text).map_err(|source| LoadError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Dashboard {
            file: path.to_path_buf(),
            doc,
        })
    }

    fn name(&self) -> String {
        self.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn uid(&self) -> Option<&str> {
        self.doc.get("uid").and_then(Value::as_str)
    }

    /// Every panel, those inside collapsed rows included.
    pub fn panels(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        for p in self.doc["panels"].as_array().into_iter().flatten() {
            out.push(p);
            out.extend(p["panels"].as_array().into_iter().flatten());
        }
        out
    }

    fn variables(&self) -> impl Iterator<Item = &Value> {
        self.doc["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
    }

    fn annotations(&self) -> impl Iterator<Item = &Value> {
        self.doc["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a.get("builtIn").and_then(Value::as_i64) != Some(1))
    }

    /// The PromQL of every panel target, query variable and annotation,
    /// as written (with Grafana's variables).
    pub fn queries(&self) -> Vec<Query> {
        let name = self.name();
        let mut out = Vec::new();
        for p in self.panels() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t.get("expr").and_then(Value::as_str) {
                    out.push(Query {
                        origin: format!(
                            "{name}: panel {} \"{}\" target {}",
                            p["id"],
                            title(p),
                            t["refId"].as_str().unwrap_or("?")
                        ),
                        expr: e.to_string(),
                        kind: QueryKind::Panel,
                    });
                }
            }
        }
        for v in self.variables() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or("");
            // label_values(metric, label): the metric must have series.
            if let Some(inner) = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
            {
                let metric = inner.rsplit_once(',').map_or(inner, |(m, _)| m).trim();
                out.push(Query {
                    origin: format!("{name}: variable ${}", v["name"].as_str().unwrap_or("?")),
                    expr: metric.to_string(),
                    kind: QueryKind::Variable,
                });
            }
        }
        for a in self.annotations() {
            if let Some(e) = a.get("expr").and_then(Value::as_str) {
                out.push(Query {
                    origin: format!(
                        "{name}: annotation \"{}\"",
                        a["name"].as_str().unwrap_or("")
                    ),
                    expr: e.to_string(),
                    kind: QueryKind::Annotation,
                });
            }
        }
        out
    }

    /// The problems of this one dashboard.
    pub fn lint(&self, names: &MetricNames) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.lint_settings(&mut problems);
        let mut ids: BTreeMap<i64, usize> = BTreeMap::new();
        for p in self.panels() {
            if let Some(id) = p["id"].as_i64() {
                *ids.entry(id).or_default() += 1;
            }
            self.lint_panel(p, &mut problems);
        }
        let file = self.name();
        let mut bad = |at: String, what: String| problems.push(Problem { at, what });
        for (id, n) in ids {
            if n > 1 {
                bad(file.clone(), format!("panel id {id} is used {n} times"));
            }
        }
        self.lint_queries(names, &mut problems);
        problems
    }

    /// The dashboard's own settings: uid, title, the datasource variable,
    /// the variables' and annotations' datasources.
    fn lint_settings(&self, problems: &mut Vec<Problem>) {
        let file = self.name();
        let mut bad = |at: String, what: String| problems.push(Problem { at, what });
        match self.uid() {
            None | Some("") => bad(
                file.clone(),
                "no uid (provisioning needs a stable uid)".into(),
            ),
            Some(u) if u.len() > 40 => {
                bad(file.clone(), format!("uid {u:?} is over 40 characters"))
            }
            Some(_) => {}
        }
        if title(&self.doc).is_empty() {
            bad(file.clone(), "no title".into());
        }
        let has_ds_var = self.variables().any(|v| {
            v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"
        });
        if !has_ds_var {
            bad(
                file.clone(),
                "no \"datasource\" template variable of type datasource for prometheus".into(),
            );
        }
        for v in self.variables() {
            if v["type"] == "query" && !is_datasource_variable(&v["datasource"]) {
                bad(
                    format!("{file}: variable ${}", v["name"].as_str().unwrap_or("?")),
                    "its datasource is not the ${datasource} variable".into(),
                );
            }
        }
        for a in self.annotations() {
            if !is_datasource_variable(&a["datasource"]) {
                bad(
                    format!(
                        "{file}: annotation \"{}\"",
                        a["name"].as_str().unwrap_or("")
                    ),
                    "its datasource is not the ${datasource} variable".into(),
                );
            }
        }
    }

    /// One panel: id, title, place in the grid, datasource, queries.
    fn lint_panel(&self, p: &Value, problems: &mut Vec<Problem>) {
        let file = self.name();
        let mut bad = |at: String, what: String| problems.push(Problem { at, what });
        let at = format!("{file}: panel {} \"{}\"", p["id"], title(p));
        if p["id"].as_i64().is_none() {
            bad(at.clone(), "no numeric id".into());
        }
        if title(p).is_empty() {
            bad(at.clone(), "no title".into());
        }
        let g = &p["gridPos"];
        match (
            g["x"].as_i64(),
            g["w"].as_i64(),
            g["h"].as_i64(),
            g["y"].as_i64(),
        ) {
            (Some(x), Some(w), Some(h), Some(_)) if x >= 0 && w > 0 && h > 0 && x + w <= 24 => {}
            _ => bad(
                at.clone(),
                format!("gridPos {g} is not inside the 24-column grid"),
            ),
        }
        if p["type"] == "row" {
            return;
        }
        if !is_datasource_variable(&p["datasource"]) {
            bad(
                at.clone(),
                "its datasource is not the ${datasource} variable".into(),
            );
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            bad(at.clone(), "no query".into());
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            let r = t["refId"].as_str().unwrap_or("");
            let tat = format!("{at} target {r}");
            if r.is_empty() || !refs.insert(r.to_string()) {
                bad(
                    tat.clone(),
                    "refId missing or not unique in the panel".into(),
                );
            }
            if !is_datasource_variable(&t["datasource"]) {
                bad(
                    tat.clone(),
                    "its datasource is not the ${datasource} variable".into(),
                );
            }
            if t["expr"].as_str().unwrap_or("").trim().is_empty() {
                bad(tat.clone(), "empty expr".into());
            }
        }
    }

    /// Every query: variables defined, metrics that exist.
    fn lint_queries(&self, names: &MetricNames, problems: &mut Vec<Problem>) {
        let mut bad = |at: String, what: String| problems.push(Problem { at, what });
        let defined: BTreeSet<String> = self
            .variables()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect();
        for q in self.queries() {
            for v in promql::variables(&q.expr) {
                if !defined.contains(&v) && !GLOBAL_VARIABLES.contains(&v.as_str()) {
                    bad(q.origin.clone(), format!("uses ${v}, which is not defined"));
                }
            }
            let names_used = promql::metric_names(&q.expr);
            if names_used.is_empty() {
                bad(q.origin.clone(), "selects no metric".into());
            }
            for n in names_used {
                if let Some(why) = names.check(&n) {
                    bad(q.origin.clone(), why);
                }
            }
        }
    }
}

/// Lints every dashboard, and that their uids differ.
pub fn lint_set(boards: &[Dashboard], names: &MetricNames) -> Vec<Problem> {
    let mut problems: Vec<Problem> = boards.iter().flat_map(|d| d.lint(names)).collect();
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for d in boards {
        if let Some(uid) = d.uid() {
            if let Some(other) = seen.insert(uid, &d.file) {
                problems.push(Problem {
                    at: d.name(),
                    what: format!("uid {uid:?} is also the uid of {}", other.display()),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn board(doc: Value) -> Dashboard {
        Dashboard {
            file: PathBuf::from("test.json"),
            doc,
        }
    }

    fn ds() -> Value {
        json!({"type": "prometheus", "uid": "${datasource}"})
    }

    fn good() -> Value {
        json!({
            "uid": "t", "title": "T",
            "templating": {"list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "node", "type": "query", "datasource": ds(),
                 "query": {"query": "label_values(twinport_node_up, node)"}}
            ]},
            "annotations": {"list": [
                {"builtIn": 1, "datasource": {"type": "grafana"}},
                {"name": "F", "datasource": ds(), "expr": "increase(twinport_failovers_total[1m]) > 0"}
            ]},
            "panels": [
                {"id": 1, "type": "row", "title": "R", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}},
                {"id": 2, "type": "timeseries", "title": "P", "datasource": ds(),
                 "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8},
                 "targets": [{"refId": "A", "datasource": ds(),
                              "expr": "sum by (node) (rate(twinport_requests_total{node=~\"$node\"}[$__rate_interval]))"}]}
            ]
        })
    }

    fn names() -> MetricNames {
        let mut n = MetricNames::default();
        n.add_exposition(
            "# HELP twinport_node_up x\n# TYPE twinport_node_up gauge\ntwinport_node_up{node=\"a\"} 1\n\
             twinport_failovers_total{reason=\"passive\"} 0\ntwinport_requests_total{node=\"a\"} 3\n",
        );
        n
    }

    fn whats(d: &Dashboard) -> Vec<String> {
        d.lint(&names())
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_good_dashboard_has_no_problem_and_lists_its_queries() {
        let d = board(good());
        assert_eq!(whats(&d), Vec::<String>::new());
        let kinds: Vec<QueryKind> = d.queries().iter().map(|q| q.kind).collect();
        assert_eq!(
            kinds,
            [QueryKind::Panel, QueryKind::Variable, QueryKind::Annotation]
        );
        assert_eq!(d.queries()[1].expr, "twinport_node_up");
    }

    #[test]
    fn each_mistake_is_reported_where_it_is() {
        let mut doc = good();
        doc["panels"][1]["id"] = json!(1);
        let p = whats(&board(doc));
        assert!(
            p.iter().any(|w| w.contains("panel id 1 is used 2 times")),
            "{p:?}"
        );

        let mut doc = good();
        doc["panels"][1]["datasource"] = json!({"type": "prometheus", "uid": "prod-prom"});
        let p = whats(&board(doc));
        assert!(
            p.iter()
                .any(|w| w.contains("panel 2 \"P\": its datasource")),
            "{p:?}"
        );

        let mut doc = good();
        doc["panels"][1]["targets"][0]["expr"] = json!("rate(twinport_reqests_total[5m])");
        let p = whats(&board(doc));
        assert!(
            p.iter()
                .any(|w| w.contains("twinport_reqests_total is not exported")),
            "{p:?}"
        );

        let mut doc = good();
        doc["panels"][1]["targets"][0]["expr"] = json!("twinport_node_up{instance=~\"$instance\"}");
        let p = whats(&board(doc));
        assert!(
            p.iter()
                .any(|w| w.contains("uses $instance, which is not defined")),
            "{p:?}"
        );

        let mut doc = good();
        doc["templating"]["list"].as_array_mut().unwrap().remove(0);
        let p = whats(&board(doc));
        assert!(
            p.iter()
                .any(|w| w.contains("no \"datasource\" template variable")),
            "{p:?}"
        );

        let mut doc = good();
        doc["panels"][1]["gridPos"]["x"] = json!(18);
        let p = whats(&board(doc));
        assert!(p.iter().any(|w| w.contains("24-column grid")), "{p:?}");

        let mut doc = good();
        doc["panels"][1]["targets"][0]["expr"] = json!("instance:nothing:rate5m");
        let p = whats(&board(doc));
        assert!(
            p.iter()
                .any(|w| w.contains("not the name of a recording rule")),
            "{p:?}"
        );
    }

    #[test]
    fn two_dashboards_with_one_uid_are_reported() {
        let a = board(good());
        let mut b = board(good());
        b.file = PathBuf::from("other.json");
        let p = lint_set(&[a, b], &names());
        assert!(
            p.iter()
                .any(|p| p.what.contains("also the uid of test.json")),
            "{p:?}"
        );
    }
}
