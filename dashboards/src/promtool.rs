//! Prometheus' own `promtool` (Debian package `prometheus`): the judge of
//! whether rules and expressions are valid PromQL.

use crate::{promql, Query};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum PromtoolError {
    #[error("promtool is not installed (Debian: apt-get install prometheus; scripts/test installs it): {0}")]
    Missing(std::io::Error),
    #[error("promtool {args} failed:\n{output}")]
    Failed { args: String, output: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs `promtool` with `args`; its output on success.
pub fn run(args: &[&str], dir: &Path) -> Result<String, PromtoolError> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(PromtoolError::Missing)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(PromtoolError::Failed {
            args: args.join(" "),
            output: text,
        })
    }
}

/// Has promtool parse every query: each becomes a recording rule of a
/// scratch rule file in `scratch` (Grafana's variables replaced first),
/// checked with `promtool check rules`. The error names the failing rule,
/// whose `record:` name is `q<index>` into `queries`.
pub fn check_queries(queries: &[Query], scratch: &Path) -> Result<(), PromtoolError> {
    let mut yaml = String::from("# written by twinport-dashboards: each query as a rule\ngroups:\n  - name: queries\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let expr = promql::substitute(&q.expr, "1m");
        // JSON strings are valid YAML strings.
        let quoted = serde_json::to_string(&expr).expect("a string serializes");
        let origin = serde_json::to_string(&q.origin).expect("a string serializes");
        yaml.push_str(&format!(
            "      - record: q{i}\n        expr: {quoted}\n        labels: {{ origin: {origin} }}\n"
        ));
    }
    let path = scratch.join("dashboard-queries.rules.yml");
    std::fs::write(&path, yaml).map_err(|source| PromtoolError::Write {
        path: path.clone(),
        source,
    })?;
    run(&["check", "rules", &path.to_string_lossy()], scratch)
        .map(|_| ())
        .map_err(|e| match e {
            // Name the query behind each failing rule.
            PromtoolError::Failed { args, mut output } => {
                for (i, q) in queries.iter().enumerate() {
                    output =
                        output.replace(&format!("\"q{i}\""), &format!("\"q{i}\" ({})", q.origin));
                }
                PromtoolError::Failed { args, output }
            }
            other => other,
        })
}
