//! The dashboards and rules as committed pass every offline check: the
//! lint (structure, datasource variable, ids, variables, metric names by
//! prefix, runbooks), promtool parsing every query, `promtool check rules`
//! on each rule file and `promtool test rules` on the alert unit tests.
//! (The metric names against the real binaries' exports: prometheus.rs.)

use std::path::PathBuf;
use twinport_dashboards::{check, MetricNames};

#[test]
fn the_committed_dashboards_and_rules_pass_every_check() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scratch = devtools::TempDir::new("dash-lint");
    let (problems, queries) = check(
        &dir,
        &dir.join(".."),
        &MetricNames::default(),
        scratch.path(),
    )
    .unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(queries > 50, "only {queries} queries found");
}

#[test]
fn provisioning_files_are_grafana_provisioning_yaml() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana/provisioning");
    for (file, key) in [
        ("dashboards.yaml", "providers"),
        ("datasources.yaml", "datasources"),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["apiVersion"], serde_yaml::Value::from(1), "{file}");
        let list = v[key]
            .as_sequence()
            .unwrap_or_else(|| panic!("{file}: no {key}"));
        assert!(!list.is_empty(), "{file}: empty {key}");
    }
}

#[test]
fn the_demo_prometheus_config_is_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    twinport_dashboards::promtool::run(&["check", "config", "prometheus-demo.yml"], &dir)
        .unwrap_or_else(|e| panic!("{e}"));
}
