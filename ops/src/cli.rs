//! What every binary does the same way at start and stop.

use crate::config::ConfigError;
use std::path::Path;
use std::process::ExitCode;

/// Exit code for a configuration that cannot be used (EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Loads the configuration at `path` with `load`. `Err` is the exit code
/// to leave with: 64 after printing every error of an invalid file, or 0
/// after `--check` (`check`) found it valid, like `haproxy -c`.
pub fn config_or_exit<T>(
    program: &str,
    path: &Path,
    check: bool,
    load: impl FnOnce(&Path) -> Result<T, ConfigError>,
) -> Result<T, ExitCode> {
    match load(path) {
        Err(e) => {
            eprintln!("{program}: {e}");
            Err(ExitCode::from(EXIT_BAD_CONFIG))
        }
        Ok(_) if check => {
            println!("{}: configuration is valid", path.display());
            Err(ExitCode::SUCCESS)
        }
        Ok(c) => Ok(c),
    }
}

/// Resolves on SIGTERM or SIGINT: the graceful stop of a daemon.
pub async fn terminate() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
