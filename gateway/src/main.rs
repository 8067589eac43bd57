//! `gateway --config FILE`: Twinport's front gateway.
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use twinport_ops::cli;
use twinport_ops::logging::{self, LogFormat};

/// mimalloc instead of glibc's malloc: the request path allocates small,
/// short-lived buffers on several threads, where glibc's arenas spent about
/// 7 % of the gateway's CPU in the benchmark (bench/RESULTS.md). Built
/// with `no_thp` (workspace Cargo.toml): mimalloc does not ask for
/// transparent huge pages, whose 2 MiB granules made half of the idle
/// process's 26 MiB (13 MiB without, same speed; bench/PROFILE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "Twinport front gateway")]
struct Args {
    /// The gateway's YAML configuration.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration, print the result and exit.
    #[arg(long)]
    check: bool,
    /// Take over the listening sockets of a running gateway (zero-downtime upgrade).
    #[arg(short, long)]
    upgrade: bool,
    /// Run in the background.
    #[arg(short, long)]
    daemon: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_format);

    let config =
        match cli::config_or_exit("gateway", &args.config, args.check, gateway::config::load) {
            Ok(c) => c,
            Err(code) => return code,
        };
    let opts = gateway::server::ProcessOptions {
        upgrade: args.upgrade,
        daemon: args.daemon,
    };
    match gateway::server::run(config, args.config.clone(), opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
