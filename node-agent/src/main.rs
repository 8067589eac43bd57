//! `node-agent --config FILE`: one per portal node.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use twinport_ops::cli;
use twinport_ops::logging::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "node-agent",
    version,
    about = "Twinport node-agent: readiness, drain, supervision and upgrades of one portal node"
)]
struct Args {
    /// The agent's YAML configuration.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration, print the result and exit.
    #[arg(long)]
    check: bool,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install a release and make it current (first deployment, agent stopped).
    Install {
        /// An executable or a directory.
        #[arg(long)]
        release: PathBuf,
        #[arg(long)]
        version: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_format);
    let config = match cli::config_or_exit(
        "node-agent",
        &args.config,
        args.check,
        node_agent::config::load,
    ) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match args.command {
        Some(Cmd::Install { release, version }) => install(&config, &release, &version),
        None => run(config, args.config.clone()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn install(
    config: &node_agent::config::AgentConfig,
    release: &std::path::Path,
    version: &str,
) -> anyhow::Result<()> {
    if std::net::TcpStream::connect(config.control.listen).is_ok() {
        anyhow::bail!(
            "an agent answers on {}: upgrade a running node through its control API (POST /v1/upgrade or twinctl rolling-upgrade)",
            config.control.listen
        );
    }
    let store = node_agent::release::Store::new(&config.state_dir);
    let path = store.install(release, version)?;
    store.switch(version)?;
    println!(
        "installed {version} in {} and made it current",
        path.display()
    );
    Ok(())
}

fn run(config: node_agent::config::AgentConfig, path: PathBuf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let readiness = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} (listen): {e}", config.listen))?;
        let control = tokio::net::TcpListener::bind(config.control.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {} (control.listen): {e}",
                    config.control.listen
                )
            })?;
        node_agent::serve(config, path, readiness, control, cli::terminate()).await
    })
}
