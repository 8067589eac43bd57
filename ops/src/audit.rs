//! The audit trail of control calls: one JSON line per call, appended and
//! flushed to disk before the call answers, so it survives restarts and
//! crashes. The gateway's admin API and the node-agent's control API both
//! write one.

use serde::Serialize;
use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

#[derive(Serialize)]
struct Entry<'a> {
    time: String,
    caller: String,
    action: &'a str,
    result: &'a str,
    status: u16,
}

impl AuditLog {
    /// Opens (creating it and its directory if needed) the log at `path`.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry and syncs it. A failure to write is logged, not
    /// hidden: the call itself has already happened.
    pub fn record(&self, caller: impl Display, action: &str, result: &str, status: u16) {
        let entry = Entry {
            time: crate::timestamp(SystemTime::now()),
            caller: caller.to_string(),
            action,
            result,
            status,
        };
        let mut line = serde_json::to_string(&entry).unwrap_or_default();
        line.push('\n');
        let written = match self.file.lock() {
            Ok(mut f) => f.write_all(line.as_bytes()).and_then(|_| f.sync_data()),
            Err(_) => Err(std::io::Error::other("audit log lock poisoned")),
        };
        if let Err(e) = written {
            tracing::error!(path = %self.path.display(), error = %e, %action, "could not write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn entries_are_appended_across_reopens() {
        let dir = std::env::temp_dir().join(format!("twinport-audit-{}", std::process::id()));
        let path = dir.join("sub/audit.log");
        let _ = std::fs::remove_dir_all(&dir);
        let caller: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        AuditLog::open(&path)
            .unwrap()
            .record(caller, "drain a", "ok", 200);
        AuditLog::open(&path)
            .unwrap()
            .record(caller, "status", "unauthorized", 401);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["action"], "drain a");
        assert_eq!(lines[1]["status"], 401);
        assert_eq!(lines[1]["caller"], "127.0.0.1:5000");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
