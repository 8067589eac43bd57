//! Releases on disk, as a careful deploy tool keeps them:
//!
//! ```text
//! state_dir/
//!   releases/1.0.0/...      one directory per version, never changed once installed
//!   releases/2.0.0/...
//!   current -> releases/2.0.0   switched atomically (a new link renamed over the old)
//! ```
//!
//! A release is given as a path to an executable (copied into its
//! directory) or to a directory (copied whole). The previous releases are
//! kept, so a rollback is one more switch of `current`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("version `{0}` is not usable: 1-64 characters of A-Z, a-z, 0-9, '.', '_', '+' or '-', not starting with '.'")]
    BadVersion(String),
    #[error("release path {0} does not exist")]
    Missing(PathBuf),
    #[error("release path {0} is neither a file nor a directory")]
    NotFileOrDir(PathBuf),
    #[error("version {0} is the one running now")]
    Current(String),
    #[error("version {0} is not installed")]
    NotInstalled(String),
    #[error("no release is installed in {0}: install one with `node-agent install --release PATH --version V`")]
    NoneInstalled(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ReleaseError + 'a {
    move |source| ReleaseError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a version string before it becomes a directory name.
pub fn check_version(v: &str) -> Result<(), ReleaseError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && !v.starts_with('.')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::BadVersion(v.to_string()))
    }
}

/// The releases of one node.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.to_path_buf(),
        }
    }

    fn releases(&self) -> PathBuf {
        self.dir.join("releases")
    }

    fn current_link(&self) -> PathBuf {
        self.dir.join("current")
    }

    pub fn path_of(&self, version: &str) -> PathBuf {
        self.releases().join(version)
    }

    /// The version `current` points at, if any.
    pub fn current(&self) -> Option<String> {
        let target = fs::read_link(self.current_link()).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Like [`Store::current`], as an error when nothing is installed.
    pub fn require_current(&self) -> Result<String, ReleaseError> {
        self.current()
            .ok_or_else(|| ReleaseError::NoneInstalled(self.dir.clone()))
    }

    /// Checks what [`Store::install`] needs before anything is changed.
    pub fn check_source(&self, src: &Path, version: &str) -> Result<(), ReleaseError> {
        check_version(version)?;
        let meta = fs::metadata(src).map_err(|_| ReleaseError::Missing(src.to_path_buf()))?;
        if !meta.is_file() && !meta.is_dir() {
            return Err(ReleaseError::NotFileOrDir(src.to_path_buf()));
        }
        if self.current().as_deref() == Some(version) {
            return Err(ReleaseError::Current(version.to_string()));
        }
        Ok(())
    }

    /// Copies `src` into `releases/<version>` (replacing an earlier copy
    /// of that version that is not current). The copy is made beside it
    /// and renamed into place, so a half-copied release never exists
    /// under its version's name.
    pub fn install(&self, src: &Path, version: &str) -> Result<PathBuf, ReleaseError> {
        self.check_source(src, version)?;
        let releases = self.releases();
        fs::create_dir_all(&releases).map_err(io_err("cannot create", &releases))?;
        let staging = releases.join(format!(".incoming-{version}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let copied = if src.is_dir() {
            copy_dir(src, &staging)
        } else {
            fs::create_dir_all(&staging)
                .and_then(|_| {
                    fs::copy(src, staging.join(src.file_name().unwrap_or("app".as_ref())))
                })
                .map(|_| ())
        };
        if let Err(e) = copied {
            let _ = fs::remove_dir_all(&staging);
            return Err(io_err("cannot copy the release from", src)(e));
        }
        let dest = self.path_of(version);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(io_err("cannot replace", &dest))?;
        }
        fs::rename(&staging, &dest).map_err(io_err("cannot move into place", &dest))?;
        Ok(dest)
    }

    /// Points `current` at `version`: a new link, renamed over the old one
    /// (rename is atomic, so `current` always points at a whole release).
    pub fn switch(&self, version: &str) -> Result<(), ReleaseError> {
        let target = self.path_of(version);
        if !target.is_dir() {
            return Err(ReleaseError::NotInstalled(version.to_string()));
        }
        let tmp = self.dir.join(format!(".current-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("releases").join(version), &tmp)
            .map_err(io_err("cannot create the link", &tmp))?;
        let link = self.current_link();
        fs::rename(&tmp, &link).map_err(io_err("cannot switch", &link))?;
        // Make the switch durable before the app starts from it.
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Installed versions, oldest first (by the time they were installed).
    pub fn installed(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.releases()) else {
            return Vec::new();
        };
        let mut v: Vec<(std::time::SystemTime, String)> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    return None;
                }
                Some((e.metadata().ok()?.modified().ok()?, name))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// Removes the oldest releases so that `keep` remain besides the
    /// current one and `also_keep` (the rollback target); the removed ones.
    pub fn prune(&self, keep: usize, also_keep: Option<&str>) -> Vec<String> {
        let current = self.current();
        let others: Vec<String> = self
            .installed()
            .into_iter()
            .filter(|v| Some(v.as_str()) != current.as_deref())
            .collect();
        let excess = others.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for v in others.into_iter().take(excess) {
            if Some(v.as_str()) == also_keep {
                continue;
            }
            if fs::remove_dir_all(self.path_of(&v)).is_ok() {
                removed.push(v);
            }
        }
        removed
    }
}

/// Copies a directory tree (files keep their permissions; links stay links).
fn copy_dir(src: &Path, dst: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let t = entry.file_type()?;
        if t.is_dir() {
            copy_dir(&from, &to)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else {
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("twinport-release-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn install_switch_and_prune() {
        let d = tmp("store");
        let exe = d.join("app.sh");
        fs::write(&exe, "#!/bin/sh\necho 1\n").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        let dir_release = d.join("rel2");
        fs::create_dir_all(dir_release.join("bin")).unwrap();
        fs::write(dir_release.join("bin/app"), "x").unwrap();
        std::os::unix::fs::symlink("bin/app", dir_release.join("app")).unwrap();

        let s = Store::new(&d.join("state"));
        assert!(matches!(
            s.require_current(),
            Err(ReleaseError::NoneInstalled(_))
        ));
        let p1 = s.install(&exe, "1.0.0").unwrap();
        let installed = p1.join("app.sh");
        assert_eq!(
            fs::metadata(&installed).unwrap().permissions().mode() & 0o111,
            0o111
        );
        s.switch("1.0.0").unwrap();
        assert_eq!(s.current().as_deref(), Some("1.0.0"));
        assert!(matches!(
            s.install(&exe, "1.0.0"),
            Err(ReleaseError::Current(_))
        ));

        s.install(&dir_release, "2.0.0").unwrap();
        assert_eq!(
            fs::read_link(s.path_of("2.0.0").join("app")).unwrap(),
            Path::new("bin/app")
        );
        s.switch("2.0.0").unwrap();
        assert_eq!(s.current().as_deref(), Some("2.0.0"));
        // The link is relative, so the state directory can move.
        assert_eq!(
            fs::read_link(d.join("state/current")).unwrap(),
            Path::new("releases/2.0.0")
        );

        for v in ["3", "4", "5"] {
            std::thread::sleep(std::time::Duration::from_millis(20));
            s.install(&exe, v).unwrap();
        }
        s.switch("5").unwrap();
        assert_eq!(s.installed(), ["1.0.0", "2.0.0", "3", "4", "5"]);
        // Keep two besides the current one, and the rollback target 1.0.0.
        let removed = s.prune(2, Some("1.0.0"));
        assert_eq!(removed, ["2.0.0"]);
        assert_eq!(s.installed(), ["1.0.0", "3", "4", "5"]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_input_changes_nothing() {
        let d = tmp("bad");
        let s = Store::new(&d);
        for v in ["", "../x", ".hidden", "a/b", "1 0"] {
            assert!(
                matches!(s.check_source(&d, v), Err(ReleaseError::BadVersion(_))),
                "{v}"
            );
        }
        let err = s.install(&d.join("nope"), "2").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("release path {} does not exist", d.join("nope").display())
        );
        assert!(matches!(s.switch("9"), Err(ReleaseError::NotInstalled(_))));
        assert!(!d.join("releases").exists() || s.installed().is_empty());
        assert!(s.current().is_none());
        let _ = fs::remove_dir_all(&d);
    }
}
