//! `ticketing --config FILE`: the queue-ticketing service.
//! `ticketing --openapi`: prints the API's OpenAPI document.
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use twinport_ops::cli;
use twinport_ops::logging::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "ticketing",
    version,
    about = "Twinport ticketing: kiosks, desks, display boards and bookings of branch offices"
)]
struct Args {
    /// The service's YAML configuration.
    #[arg(short, long, value_name = "FILE", required_unless_present = "openapi")]
    config: Option<PathBuf>,
    /// Print the API's OpenAPI document (generated from the code) and exit.
    #[arg(long, conflicts_with_all = ["config", "check"])]
    openapi: bool,
    /// Check the configuration, print the result and exit.
    #[arg(long)]
    check: bool,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.openapi {
        print!("{}", ticketing::api::document());
        return ExitCode::SUCCESS;
    }
    let Some(path) = args.config else {
        unreachable!("clap requires --config without --openapi")
    };
    logging::init(args.log_format);
    let config = match cli::config_or_exit("ticketing", &path, args.check, ticketing::config::load)
    {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ticketing: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} (listen): {e}", config.listen))?;
        ticketing::serve(config, path, listener, cli::terminate()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ticketing: {e:#}");
            ExitCode::FAILURE
        }
    }
}
