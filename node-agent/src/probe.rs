//! Probes of the local portal application: HTTP, TCP, a command, free disk
//! space. Each probe runs on its own schedule ([`crate::agent`] spawns one
//! task per probe); [`Tracker`] turns its results into a status with rise
//! and fall, like HAProxy's `rise`/`fall`, and [`aggregate`] folds every
//! probe into the node's [`Health`].

use crate::config::{Probe, ProbeKind};
use crate::state::Health;
use std::time::Duration;

/// One probe's standing after rise/fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStatus {
    Unknown,
    Passing,
    Failing,
}

impl ProbeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Unknown => "unknown",
            ProbeStatus::Passing => "passing",
            ProbeStatus::Failing => "failing",
        }
    }
}

/// Consecutive results of one probe.
#[derive(Debug, Clone)]
pub struct Tracker {
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
    pub status: ProbeStatus,
    /// What the last result said (a body excerpt, an error).
    pub detail: String,
}

impl Tracker {
    pub fn new(rise: u32, fall: u32) -> Tracker {
        Tracker {
            rise,
            fall,
            successes: 0,
            failures: 0,
            status: ProbeStatus::Unknown,
            detail: "not run yet".into(),
        }
    }

    /// Forgets the past results (the app was restarted on purpose).
    pub fn reset(&mut self) {
        *self = Tracker::new(self.rise, self.fall);
    }

    /// Records one result; true if the status changed.
    pub fn record(&mut self, ok: bool, detail: String) -> bool {
        self.detail = detail;
        let before = self.status;
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= self.rise {
                self.status = ProbeStatus::Passing;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.fall {
                self.status = ProbeStatus::Failing;
            }
        }
        before != self.status
    }
}

/// The node's health from every probe: failing if one fails, passing if
/// all pass, unknown otherwise.
pub fn aggregate<'a>(trackers: impl IntoIterator<Item = &'a Tracker>) -> Health {
    let mut all_pass = true;
    for t in trackers {
        match t.status {
            ProbeStatus::Failing => return Health::Failing,
            ProbeStatus::Unknown => all_pass = false,
            ProbeStatus::Passing => {}
        }
    }
    if all_pass {
        Health::Passing
    } else {
        Health::Unknown
    }
}

/// Runs `probe` once within its timeout: `Ok(detail)` if it passed.
pub async fn run(probe: &Probe, http: &reqwest::Client) -> Result<String, String> {
    match tokio::time::timeout(probe.timeout, run_unbounded(&probe.kind, http)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(probe.timeout)
        )),
    }
}

async fn run_unbounded(kind: &ProbeKind, http: &reqwest::Client) -> Result<String, String> {
    match kind {
        ProbeKind::Http {
            url,
            status,
            body_contains,
        } => {
            let resp = http
                .get(url.clone())
                .send()
                .await
                .map_err(|e| format!("GET {url}: {}", root_cause(&e)))?;
            let got = resp.status().as_u16();
            let body = resp
                .text()
                .await
                .map_err(|e| format!("reading the body: {e}"))?;
            if got != *status {
                return Err(format!("status {got}, expected {status}"));
            }
            match body_contains {
                Some(want) if !body.contains(want.as_str()) => {
                    Err(format!("status {got} but the body lacks `{want}`"))
                }
                _ => Ok(format!("status {got}")),
            }
        }
        ProbeKind::Tcp { address } => tokio::net::TcpStream::connect(address)
            .await
            .map(|_| format!("connected to {address}"))
            .map_err(|e| format!("connect {address}: {e}")),
        ProbeKind::Command { argv } => {
            let out = tokio::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
            let text = String::from_utf8_lossy(if out.stderr.is_empty() {
                &out.stdout
            } else {
                &out.stderr
            });
            let tail: String = text
                .trim()
                .chars()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if out.status.success() {
                Ok(format!("exit 0 {tail}").trim_end().to_string())
            } else {
                Err(format!("{} {tail}", out.status).trim_end().to_string())
            }
        }
        ProbeKind::Disk { path, min_free_mib } => {
            let path = path.clone();
            let min = *min_free_mib;
            tokio::task::spawn_blocking(move || free_mib(&path).map(|free| (free, path)))
                .await
                .map_err(|e| e.to_string())?
                .and_then(|(free, path)| {
                    let msg = format!("{free} MiB free on {}", path.display());
                    if free >= min {
                        Ok(msg)
                    } else {
                        Err(format!("{msg}, {min} MiB needed"))
                    }
                })
        }
    }
}

/// Free space for unprivileged users on the file system of `path`, in MiB.
fn free_mib(path: &std::path::Path) -> Result<u64, String> {
    let s =
        nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64) >> 20)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The HTTP client probes use: a new connection for every check (like
/// HAProxy's), so a hung app is caught even when an old connection lingers.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("a reqwest client with rustls builds")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn rise_and_fall_need_consecutive_results() {
        let mut t = Tracker::new(2, 3);
        assert!(!t.record(true, "ok".into()));
        assert_eq!(t.status, ProbeStatus::Unknown);
        assert!(t.record(true, "ok".into()));
        assert_eq!(t.status, ProbeStatus::Passing);
        assert!(!t.record(false, "x".into()));
        assert!(!t.record(false, "x".into()));
        assert!(
            !t.record(true, "ok".into()),
            "a success in between resets the count"
        );
        assert!(!t.record(false, "x".into()));
        assert!(!t.record(false, "x".into()));
        assert!(t.record(false, "refused".into()));
        assert_eq!(
            (t.status, t.detail.as_str()),
            (ProbeStatus::Failing, "refused")
        );
        t.reset();
        assert_eq!(t.status, ProbeStatus::Unknown);
    }

    #[test]
    fn one_failing_probe_fails_the_node() {
        let mut a = Tracker::new(1, 1);
        let mut b = Tracker::new(1, 1);
        assert_eq!(aggregate([&a, &b]), Health::Unknown);
        a.record(true, String::new());
        assert_eq!(aggregate([&a, &b]), Health::Unknown);
        b.record(true, String::new());
        assert_eq!(aggregate([&a, &b]), Health::Passing);
        b.record(false, String::new());
        assert_eq!(aggregate([&a, &b]), Health::Failing);
    }

    fn probe(kind: ProbeKind) -> Probe {
        Probe {
            name: "p".into(),
            kind,
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
        }
    }

    #[tokio::test]
    async fn command_tcp_and_disk_probes_tell_pass_from_fail() {
        let c = http_client();
        let argv = |a: &[&str]| ProbeKind::Command {
            argv: a.iter().map(|s| s.to_string()).collect(),
        };
        assert!(run(&probe(argv(&["true"])), &c).await.is_ok());
        let err = run(&probe(argv(&["sh", "-c", "echo db down >&2; exit 3"])), &c)
            .await
            .unwrap_err();
        assert!(
            err.contains("exit status: 3") && err.contains("db down"),
            "{err}"
        );
        assert!(run(&probe(argv(&["/nonexistent/x"])), &c)
            .await
            .unwrap_err()
            .contains("cannot run"));
        let mut slow = probe(argv(&["sleep", "5"]));
        slow.timeout = Duration::from_millis(100);
        assert!(run(&slow, &c)
            .await
            .unwrap_err()
            .contains("no answer within 100ms"));

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = l.local_addr().unwrap();
        assert!(run(&probe(ProbeKind::Tcp { address }), &c).await.is_ok());
        drop(l);
        assert!(run(&probe(ProbeKind::Tcp { address }), &c).await.is_err());

        let disk = |min| {
            probe(ProbeKind::Disk {
                path: PathBuf::from("/"),
                min_free_mib: min,
            })
        };
        assert!(run(&disk(1), &c).await.unwrap().contains("MiB free on /"));
        assert!(run(&disk(u64::MAX >> 21), &c)
            .await
            .unwrap_err()
            .contains("MiB needed"));
    }
}
