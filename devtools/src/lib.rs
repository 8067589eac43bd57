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

/// A test CA in `dir` (`ca.crt`) and, per `(name, addresses)`, a
/// certificate it signed for both ends of TLS (server and client), with
/// those names and IPs: `{name}.crt`, `{name}.key`. For links with
/// mutual TLS, such as the gateway pair's.
pub fn write_test_pki(dir: &Path, members: &[(&str, &[String])]) -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Twinport test CA");
    let ca = ca.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.crt"), ca.pem())?;
    for (name, addresses) in members {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(addresses.to_vec())?;
        p.distinguished_name.push(rcgen::DnType::CommonName, *name);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &ca, &ca_key)?;
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem())?;
        write_secret(&dir.join(format!("{name}.key")), &key.serialize_pem());
    }
    Ok(())
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
    /// Its log, and how long the file was when it started (a log may hold
    /// earlier runs).
    log: Option<(PathBuf, u64)>,
}

impl Proc {
    /// Starts `cmd` with its output appended to `log` (or discarded).
    pub fn spawn(name: &str, mut cmd: Command, log: Option<&Path>) -> Proc {
        let (out, err, log) = match log {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .expect("log file");
                let from = f.metadata().map(|m| m.len()).unwrap_or(0);
                (
                    Stdio::from(f.try_clone().expect("log fd")),
                    Stdio::from(f),
                    Some((p.to_path_buf(), from)),
                )
            }
            None => (Stdio::null(), Stdio::null(), None),
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
            log,
        }
    }

    /// What it logged since it started (empty without a log).
    pub fn log_text(&self) -> String {
        let Some((path, from)) = &self.log else {
            return String::new();
        };
        let bytes = std::fs::read(path).unwrap_or_default();
        let from = (*from as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// It said that a port it was given is taken ([`says_port_taken`]).
    pub fn says_port_taken(&self) -> bool {
        says_port_taken(&self.log_text())
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

    /// It has exited (it is reaped then).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
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

/// A daemon's log `text` says that a port it was given is taken: ours say
/// "Address already in use", pingora's listeners "... is in use, will try
/// again" (they keep trying for a while).
pub fn says_port_taken(text: &str) -> bool {
    text.contains("Address already in use") || text.contains(" is in use, will try again")
}

/// How a daemon started on ports from [`free_addr`] came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Its ports accept connections and it runs.
    Up,
    /// Another process took one of its ports between [`free_addr`] and the
    /// daemon's bind (its log says so): start it again on new ports.
    PortTaken,
    /// Anything else: it exited, or its ports did not open in time.
    Failed,
}

/// Waits up to `timeout` until the daemon `proc` itself listens on every
/// one of `addrs` (a port that answers may be another process's), or
/// says that a port was taken, or exits.
pub fn wait_started(proc: &mut Proc, addrs: &[SocketAddr], timeout: Duration) -> Started {
    let end = Instant::now() + timeout;
    loop {
        if proc.says_port_taken() {
            return Started::PortTaken;
        }
        if proc.exited() {
            // It may have logged the reason just before it exited.
            return if proc.says_port_taken() {
                Started::PortTaken
            } else {
                Started::Failed
            };
        }
        let ours = listening_sockets(proc.pid());
        if addrs.iter().all(|a| ours.contains(&a.port())) {
            return Started::Up;
        }
        if Instant::now() >= end {
            return Started::Failed;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The TCP ports process `pid` listens on (Linux: its socket inodes in
/// /proc/PID/fd matched against its network namespace's tcp and tcp6
/// tables, state LISTEN).
pub fn listening_sockets(pid: i32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address (ADDR:PORT in hex), state (0A = LISTEN), inode.
            let (Some(local), Some(&"0A"), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if let (Some(port), true) = (port, inodes.contains(*inode)) {
                ports.push(port);
            }
        }
    }
    ports
}

/// How often a daemon is started on new ports before giving up.
pub const PORT_ATTEMPTS: u32 = 5;

/// Starts a daemon on ports from [`free_addr`]: `start` picks new ports,
/// writes the config and spawns, and returns `None` only when
/// [`wait_started`] said [`Started::PortTaken`] (a port was taken by
/// another process in between; `free_addr` only promises that this
/// process never hands out one port twice). Tried up to
/// [`PORT_ATTEMPTS`] times, so a test never fails for a lost port race.
pub fn on_free_ports<T>(what: &str, mut start: impl FnMut() -> Option<T>) -> T {
    for attempt in 1..=PORT_ATTEMPTS {
        if let Some(t) = start() {
            return t;
        }
        eprintln!(
            "{what}: a port it was given was taken by another process; \
             starting it again on new ports ({attempt}/{PORT_ATTEMPTS})"
        );
    }
    panic!("{what}: a port was taken {PORT_ATTEMPTS} times in a row")
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

    /// A daemon that listens on its port is up; one whose port another
    /// process holds is `PortTaken` even though that port answers; one
    /// that exits for another reason has `Failed`.
    #[test]
    fn a_daemon_that_finds_its_port_taken_is_told_apart() {
        let dir = TempDir::new("port-taken");
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap();
        let log = dir.path().join("daemon.log");
        // Only what it logs from its own start counts.
        std::fs::write(&log, "an earlier run: Address already in use\n").unwrap();
        let own = free_addr();
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            &format!(
                "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', {}))\ns.listen()\ntime.sleep(30)",
                own.port()
            ),
        ]);
        let mut listener = Proc::spawn("listener", cmd, Some(&log));
        assert_eq!(
            wait_started(&mut listener, &[own], Duration::from_secs(10)),
            Started::Up
        );
        assert!(listening_sockets(std::process::id() as i32).contains(&taken.port()));
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "sleep 0.3; echo 'cannot listen on x: Address already in use (os error 98)' >&2; sleep 30",
        ]);
        let mut loser = Proc::spawn("loser", cmd, Some(&log));
        assert_eq!(
            wait_started(&mut loser, &[taken], Duration::from_secs(5)),
            Started::PortTaken
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'bad config' >&2; exit 64"]);
        let mut broken = Proc::spawn("broken", cmd, Some(&log));
        let free = free_addr();
        assert_eq!(
            wait_started(&mut broken, &[free], Duration::from_secs(5)),
            Started::Failed
        );
    }

    #[test]
    fn on_free_ports_tries_again_and_gives_up_in_the_end() {
        let mut tries = 0;
        let got = on_free_ports("test", || {
            tries += 1;
            (tries == 3).then_some(tries)
        });
        assert_eq!(got, 3);
        let never = std::panic::catch_unwind(|| on_free_ports("test", || None::<()>));
        assert!(never.is_err());
    }
}
