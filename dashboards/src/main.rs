//! `dashboard-lint`: checks the Twinport dashboards and Prometheus rules.
//!
//!     dashboard-lint [--dir dashboards] [--repo .] [--metrics URL]...
//!
//! With `--metrics`, every metric name used must be one those endpoints
//! export (give the gateway's, a node-agent's and a ticketing instance's
//! `/metrics`); without, names only need the `twinport_` prefix. Every
//! query is also parsed by `promtool`, and the alert unit tests in
//! `dashboards/tests/*.yml` are run with `promtool test rules`. Exit
//! status 1 when anything is wrong.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use twinport_dashboards::{check, MetricNames};

#[derive(Parser)]
#[command(about = "Checks the Twinport Grafana dashboards and Prometheus rules")]
struct Args {
    /// The dashboards folder (grafana/, alerts/, rules/, tests/).
    #[arg(long, default_value = "dashboards")]
    dir: PathBuf,
    /// The repository root, against which runbook links are resolved.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// A /metrics URL of the running appliance (repeatable).
    #[arg(long = "metrics")]
    metrics: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut names = MetricNames::default();
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    for url in &args.metrics {
        let text = client
            .get(url)
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .with_context(|| format!("reading {url}"))?;
        names.add_exposition(&text);
    }
    let scratch = std::env::temp_dir().join(format!("dashboard-lint-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let checked = check(&args.dir, &args.repo, &names, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let (problems, queries) = checked?;

    if problems.is_empty() {
        println!(
            "dashboard-lint: {} queries, every check passed{}",
            queries,
            if args.metrics.is_empty() {
                " (metric names checked by prefix only: give --metrics URLs to check them against the appliance)"
            } else {
                ""
            }
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!("dashboard-lint: {} problem(s)", problems.len());
        std::process::exit(1);
    }
}
