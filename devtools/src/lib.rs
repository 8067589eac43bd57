//! Development and test support for Twinport.
//!
//! - [`write_dev_cert`]: a self-signed certificate for the demo and tests;
//! - [`Proc`]: a child process that is killed when dropped, so a failing
//!   test never leaves servers behind;
//! - [`bin`]: the path of a workspace binary built by `cargo build`;
//! - [`free_port`], [`wait_for_port`] and [`eventually`]: ephemeral
//!   loopback ports and polling with a deadline instead of fixed sleeps;
//! - [`browser`]: headless Chromium through WebDriver;
//! - [`harness`]: the gateway, node-agents and ticketing on loopback, for
//!   the integration tests of every crate.
#![forbid(unsafe_code)]

pub mod browser;
pub mod harness;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Writes `cert.pem` and `key.pem` into `dir` for the given names.
pub fn write_dev_cert(dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let ck = rcgen::generate_simple_self_signed(names.to_vec())?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.key_pair.serialize_pem())?;
    Ok((cert, key))
}

/// Writes a secret (a token file) readable by its owner only, as an
/// installer would; creates the directory.
pub fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("the secret's directory");
    }
    std::fs::write(path, text).expect("write the secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// Runs `<binary> --check --config <config>` (every Twinport binary takes
/// it): its exit code and what it printed (stdout, then stderr).
pub fn check_config(binary: &str, config: &Path) -> (Option<i32>, String) {
    let out = Command::new(bin(binary))
        .arg("--check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// A port on 127.0.0.1 that was free a moment ago, and that this process
/// has not been given before: two calls never return the same port (the
/// kernel may hand a just-closed ephemeral port out again, and a config
/// with two listeners on one port is refused).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // Listeners held until a new port turns up, so the kernel cannot
    // offer the same one again in this loop.
    let mut held = Vec::new();
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port on loopback");
        let port = l.local_addr().expect("a bound address").port();
        if given.insert(port) {
            return port;
        }
        held.push(l);
        assert!(held.len() < 1000, "no new ephemeral port on loopback");
    }
}

/// `127.0.0.1:{free port}`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Path of the workspace binary `name` (built by `cargo build --workspace
/// --bins`, which the test command runs first).
pub fn bin(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one up.
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Starts `cmd` with its output appended to `log` (or discarded).
    pub fn spawn(name: &str, mut cmd: Command, log: Option<&Path>) -> Proc {
        let (out, err) = match log {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .expect("log file");
                (Stdio::from(f.try_clone().expect("log fd")), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal by name (`KILL`, `STOP`, `CONT`, `TERM`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {} failed", self.name);
    }

    /// Kills the process and waits for it, so its ports are closed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process must be continued to die cleanly.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
        self.kill();
    }
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    eventually(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
    })
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("twinport-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("TWINPORT_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_never_gives_the_same_port_twice() {
        let ports: Vec<u16> = (0..2000).map(|_| free_port()).collect();
        let unique: std::collections::HashSet<&u16> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len());
    }
}
