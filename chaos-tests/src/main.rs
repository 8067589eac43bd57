//! `chaos-tests`: runs the chaos suite against a build and prints what
//! every scenario measured. Exit code 1 if any bound was broken.
#![forbid(unsafe_code)]

use chaos_tests::appliance::HealthCheck;
use chaos_tests::report;
use chaos_tests::scenarios::{self, Settings};
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Twinport's chaos suite: one real fault at a time under load, every request recorded, bounds asserted"
)]
struct Args {
    /// The full suite: more clients and longer faults (minutes).
    #[arg(long)]
    full: bool,
    /// Only these scenarios (repeatable); all by default.
    #[arg(long = "only", value_name = "SCENARIO")]
    only: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Where gateway, node-agent, ticketing and twinctl are (default: next
    /// to this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Switch the gateway's active health checks off (the bounds for hang
    /// and blackhole must then fail).
    #[arg(long)]
    no_health_checks: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as a Markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.list {
        for (name, fault) in scenarios::list() {
            println!("{name:<18} {fault}");
        }
        return Ok(());
    }
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    for b in ["gateway", "node-agent", "ticketing", "twinctl"] {
        anyhow::ensure!(
            bin_dir.join(b).exists(),
            "{} is missing: build the workspace (cargo build --workspace --bins) or pass --bin-dir",
            bin_dir.join(b).display()
        );
    }
    let settings = Settings {
        full: args.full,
        bin_dir,
        health: HealthCheck {
            enabled: !args.no_health_checks,
            ..HealthCheck::default()
        },
    };
    let names: Vec<String> = if args.only.is_empty() {
        scenarios::list()
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect()
    } else {
        args.only.clone()
    };
    let mut results = Vec::new();
    for name in &names {
        eprintln!("==> {name}");
        let started = std::time::Instant::now();
        match scenarios::run(name, &settings).await {
            Ok(r) => {
                eprintln!(
                    "    {} in {:.1} s: {} sent, {} failed",
                    if r.passed() { "ok" } else { "FAILED" },
                    started.elapsed().as_secs_f64(),
                    r.sent,
                    r.failed
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("    error: {e:#}");
                results.push(report::ScenarioResult {
                    scenario: name.clone(),
                    violations: vec![format!("the scenario could not run: {e:#}")],
                    ..Default::default()
                });
            }
        }
    }
    print!("{}", report::table(&results));
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&results)?)?;
    }
    if let Some(p) = &args.markdown {
        std::fs::write(p, report::markdown(&results))?;
    }
    if results.iter().all(|r| r.passed()) {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
