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

/// Re-reads token files on every SIGHUP, forever: `reread(path)` loads the
/// config file at `path`, validates it whole and swaps the tokens in,
/// answering whether other settings differ from those running (they take
/// effect at the next restart, which the log says). An invalid file
/// changes nothing. systemd hears `RELOADING=1` and then `READY=1`.
pub async fn reread_tokens_on_sighup(
    path: std::path::PathBuf,
    reread: impl Fn(&Path) -> Result<bool, ConfigError>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot handle SIGHUP");
        return;
    };
    while hup.recv().await.is_some() {
        crate::systemd::reloading();
        match reread(&path) {
            Ok(false) => tracing::info!(file = %path.display(), "SIGHUP: token files re-read"),
            Ok(true) => tracing::warn!(
                file = %path.display(),
                "SIGHUP: token files re-read; other settings in the file differ from those running and take effect at the next restart"
            ),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the configuration is invalid, nothing changed")
            }
        }
        crate::systemd::ready();
    }
}
