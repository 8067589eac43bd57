//! The agent's configuration: the YAML file's types ([`file`]) and the
//! validated runtime form ([`AgentConfig`]) the rest of the agent reads.
//! Every error is collected and named by file, line and field (see
//! `twinport_ops::config`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use twinport_ops::config::{self as opsconfig, resolve, ConfigError, Errors, FieldError};

/// The file as written; nothing else reads these types.
pub mod file {
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct FileConfig {
        /// The node's name, as the gateway's config names it.
        pub node: String,
        /// Readiness listener: `/ready`, `/live`, `/metrics` (the gateway polls it).
        pub listen: String,
        pub control: Control,
        /// Weight reported by `/ready`, in percent of the gateway's weight.
        pub weight: Option<u32>,
        /// Where releases, the `current` link, the app's log and pid live.
        pub state_dir: String,
        pub app: App,
        pub probes: Vec<Probe>,
        #[serde(default)]
        pub upgrade: Upgrade,
        pub gateway: Option<Gateway>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Control {
        /// Control API address; loopback unless `allow_remote`.
        pub listen: Option<String>,
        #[serde(default)]
        pub allow_remote: bool,
        pub token_file: String,
        /// Optional second token that may only read (`GET /v1/status`,
        /// `GET /v1/upgrade`); changes with it are refused with 403.
        #[serde(default)]
        pub read_token_file: Option<String>,
        pub audit_log: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct App {
        /// `process` (the agent runs the app as its child) or `systemd`.
        pub mode: Option<String>,
        /// Process mode: the command, with `{release}`, `{version}` and
        /// `{config_dir}` (this file's directory) replaced.
        pub command: Option<Vec<String>>,
        #[serde(default)]
        pub env: BTreeMap<String, String>,
        /// Process mode: the app's stdout and stderr (default `state_dir/app.log`).
        pub log: Option<String>,
        /// Systemd mode: the unit the agent starts and stops.
        pub unit: Option<String>,
        #[serde(default, with = "humantime_serde")]
        pub stop_timeout: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        pub restart_backoff_min: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        pub restart_backoff_max: Option<Duration>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Probe {
        pub name: String,
        pub http: Option<HttpProbe>,
        pub tcp: Option<TcpProbe>,
        pub command: Option<Vec<String>>,
        pub disk: Option<DiskProbe>,
        #[serde(default, with = "humantime_serde")]
        pub interval: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        pub timeout: Option<Duration>,
        pub rise: Option<u32>,
        pub fall: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct HttpProbe {
        pub url: String,
        /// Expected status (default 200).
        pub status: Option<u16>,
        /// Text the body must contain.
        pub body_contains: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TcpProbe {
        pub address: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DiskProbe {
        pub path: String,
        /// Free space needed, in MiB.
        pub min_free_mib: u64,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Upgrade {
        pub keep_releases: Option<u32>,
        #[serde(default, with = "humantime_serde")]
        pub drain_timeout: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        pub drain_settle: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        pub start_timeout: Option<Duration>,
        pub smoke: Option<Vec<String>>,
        #[serde(default, with = "humantime_serde")]
        pub smoke_timeout: Option<Duration>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Gateway {
        /// The gateway's admin API, asked how many requests are in flight:
        /// one URL, or both gateways of a pair (the node is drained when
        /// neither routes anything to it).
        pub admin: OneOrMore,
        pub token_file: String,
        /// For an `https://` admin API: the CA that signed its certificate,
        /// and a client certificate and key for its mutual TLS.
        #[serde(default)]
        pub ca: Option<String>,
        #[serde(default)]
        pub client_certificate: Option<String>,
        #[serde(default)]
        pub client_key: Option<String>,
    }

    /// A string, or a list of them.
    #[derive(Debug, Clone, Deserialize)]
    #[serde(untagged)]
    pub enum OneOrMore {
        One(String),
        More(Vec<String>),
    }

    impl OneOrMore {
        pub fn all(&self) -> Vec<&str> {
            match self {
                OneOrMore::One(s) => vec![s.as_str()],
                OneOrMore::More(v) => v.iter().map(String::as_str).collect(),
            }
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    pub listen: SocketAddr,
    pub control: Control,
    pub weight: u32,
    pub state_dir: PathBuf,
    pub app: App,
    pub probes: Vec<Probe>,
    pub upgrade: Upgrade,
    pub gateway: Option<GatewayLink>,
}

#[derive(Clone)]
pub struct Control {
    pub listen: SocketAddr,
    pub token: Arc<[u8]>,
    pub read_token: Option<Arc<[u8]>>,
    pub audit_log: PathBuf,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("listen", &self.listen)
            .field("token", &"<redacted>")
            .field("audit_log", &self.audit_log)
            .finish()
    }
}

/// How the agent runs the portal application.
#[derive(Debug, Clone)]
pub enum App {
    /// As a child process it restarts with backoff.
    Process {
        command: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
        stop_timeout: Duration,
        backoff_min: Duration,
        backoff_max: Duration,
    },
    /// Through `systemctl` on a unit (systemd restarts it).
    Systemd {
        unit: String,
        stop_timeout: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone)]
pub enum ProbeKind {
    Http {
        url: reqwest::Url,
        status: u16,
        body_contains: Option<String>,
    },
    Tcp {
        address: SocketAddr,
    },
    Command {
        argv: Vec<String>,
    },
    Disk {
        path: PathBuf,
        min_free_mib: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Upgrade {
    /// Releases kept besides the current one (at least 1: the rollback target).
    pub keep_releases: u32,
    pub drain_timeout: Duration,
    /// Without a gateway link: how long to wait after draining so that the
    /// gateway's checks see it.
    pub drain_settle: Duration,
    /// How long the new release has to pass every probe.
    pub start_timeout: Duration,
    pub smoke: Option<Vec<String>>,
    pub smoke_timeout: Duration,
}

#[derive(Clone)]
pub struct GatewayLink {
    /// One gateway, or both of a pair.
    pub admins: Vec<reqwest::Url>,
    pub token: Arc<[u8]>,
    /// With the CA and client certificate of the config, if any.
    pub client: reqwest::Client,
}

impl std::fmt::Debug for GatewayLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let admins: Vec<&str> = self.admins.iter().map(reqwest::Url::as_str).collect();
        f.debug_struct("GatewayLink")
            .field("admins", &admins)
            .finish_non_exhaustive()
    }
}

/// Reads and validates the agent's file at `path`.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    opsconfig::load_with_bytes(path, parse).1
}

/// Parses and validates `text` as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<AgentConfig, ConfigError> {
    opsconfig::parse(path, text, AgentConfig::from_file)
}

const MS: Duration = Duration::from_millis(1);

fn url(e: &mut Errors, field: &str, v: &str) -> Option<reqwest::Url> {
    match reqwest::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        _ => {
            e.push(field, format!("`{v}` is not an http:// or https:// URL"));
            None
        }
    }
}

fn argv(e: &mut Errors, field: &str, v: &[String]) {
    if v.first().is_none_or(|p| p.trim().is_empty()) {
        e.push(field, "needs at least the program to run");
    }
}

impl AgentConfig {
    pub fn from_file(f: file::FileConfig, base: &Path) -> Result<Self, Vec<FieldError>> {
        let mut e = Errors::default();
        e.name("node", &f.node);
        let listen = e.addr("listen", &f.listen);
        let (control_listen, token, read_token) = control(&mut e, &f, listen, base);
        let weight = e.range_u32("weight", f.weight, 100, 0, 1000);
        let state_dir = resolve(base, &f.state_dir);

        let app = app(&mut e, &f, base, &state_dir);
        if f.probes.is_empty() {
            e.push(
                "probes",
                "at least one probe is needed: readiness must mean something",
            );
        }
        let probes = f
            .probes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| probe(&mut e, i, p, &f.probes[..i], base))
            .collect();
        let upgrade = upgrade(&mut e, &f.upgrade);
        let gateway = gateway(&mut e, &f, base);

        let (listen, control_listen, token, app) = match (listen, control_listen, token, app) {
            (Some(l), Some(c), Some(t), Some(a)) if e.is_empty() => (l, c, t, a),
            _ => return Err(e.0),
        };
        e.finish(|| AgentConfig {
            node: f.node,
            listen,
            control: Control {
                listen: control_listen,
                token,
                read_token,
                audit_log: resolve(base, &f.control.audit_log),
            },
            weight,
            state_dir,
            app,
            probes,
            upgrade,
            gateway,
        })
    }
}

/// A bearer token read from its file.
type Token = Arc<[u8]>;

/// `control`: the control API's address (loopback unless allowed) and
/// its tokens.
fn control(
    e: &mut Errors,
    f: &file::FileConfig,
    listen: Option<SocketAddr>,
    base: &Path,
) -> (Option<SocketAddr>, Option<Token>, Option<Token>) {
    let control_listen = e.addr(
        "control.listen",
        f.control.listen.as_deref().unwrap_or("127.0.0.1:9281"),
    );
    if let Some(c) = control_listen {
        if !c.ip().is_loopback() && !f.control.allow_remote {
            e.push("control.listen", format!("{c} is not a loopback address; set control.allow_remote: true to open the control API to the network"));
        }
        if Some(c) == listen {
            e.push("control.listen", format!("{c} is already used by listen"));
        }
    }
    let token = twinport_ops::token::read_token(&resolve(base, &f.control.token_file))
        .map_err(|why| e.push("control.token_file", why))
        .ok();
    let read_token = f.control.read_token_file.as_ref().and_then(|file| {
        match twinport_ops::token::read_token(&resolve(base, file)) {
            Ok(t) if token.as_deref() == Some(&*t) => {
                e.push(
                    "control.read_token_file",
                    "the read-only token must differ from the operator token",
                );
                None
            }
            Ok(t) => Some(t),
            Err(why) => {
                e.push("control.read_token_file", why);
                None
            }
        }
    });
    (control_listen, token, read_token)
}

/// `app`: how the agent runs the portal app (its own child, or a systemd unit).
fn app(e: &mut Errors, f: &file::FileConfig, base: &Path, state_dir: &Path) -> Option<App> {
    let stop_timeout = e.duration(
        "app.stop_timeout",
        f.app.stop_timeout,
        Duration::from_secs(10),
        10 * MS,
    );
    match f.app.mode.as_deref().unwrap_or("process") {
        "process" => {
            match &f.app.command {
                Some(c) => argv(e, "app.command", c),
                None => e.push(
                    "app.command",
                    "process mode needs the command that starts the app",
                ),
            }
            let backoff_min = e.duration(
                "app.restart_backoff_min",
                f.app.restart_backoff_min,
                200 * MS,
                10 * MS,
            );
            let backoff_max = e.duration(
                "app.restart_backoff_max",
                f.app.restart_backoff_max,
                Duration::from_secs(10),
                10 * MS,
            );
            if backoff_max < backoff_min {
                e.push(
                    "app.restart_backoff_max",
                    "is shorter than app.restart_backoff_min",
                );
            }
            // `{config_dir}` is this file's directory, known now; the
            // supervisor fills in `{release}` and `{version}` at start.
            let dir = base.to_string_lossy();
            let command = f
                .app
                .command
                .iter()
                .flatten()
                .map(|a| a.replace("{config_dir}", &dir))
                .collect();
            Some(App::Process {
                command,
                env: f.app.env.clone().into_iter().collect(),
                log: f
                    .app
                    .log
                    .as_deref()
                    .map(|l| resolve(base, l))
                    .unwrap_or_else(|| state_dir.join("app.log")),
                stop_timeout,
                backoff_min,
                backoff_max,
            })
        }
        "systemd" => match &f.app.unit {
            Some(u) if !u.trim().is_empty() => Some(App::Systemd {
                unit: u.clone(),
                stop_timeout,
            }),
            _ => {
                e.push("app.unit", "systemd mode needs the unit name");
                None
            }
        },
        other => {
            e.push(
                "app.mode",
                format!("`{other}` is not a mode: use process or systemd"),
            );
            None
        }
    }
}

/// `probes[i]`; `earlier` are the probes before it in the file.
fn probe(
    e: &mut Errors,
    i: usize,
    p: &file::Probe,
    earlier: &[file::Probe],
    base: &Path,
) -> Option<Probe> {
    let at = |k: &str| format!("probes[{i}].{k}");
    if e.name(&at("name"), &p.name) && earlier.iter().any(|q| q.name == p.name) {
        e.push(
            at("name"),
            format!("`{}` is used by an earlier probe", p.name),
        );
    }
    let kinds = [
        p.http.is_some(),
        p.tcp.is_some(),
        p.command.is_some(),
        p.disk.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        e.push(
            format!("probes[{i}]"),
            "needs exactly one of http, tcp, command or disk",
        );
        return None;
    }
    let kind = if let Some(h) = &p.http {
        let status = h.status.unwrap_or(200);
        if !(100..=599).contains(&status) {
            e.push(at("http.status"), format!("{status} is not an HTTP status"));
        }
        url(e, &at("http.url"), &h.url).map(|url| ProbeKind::Http {
            url,
            status,
            body_contains: h.body_contains.clone(),
        })
    } else if let Some(t) = &p.tcp {
        e.addr(&at("tcp.address"), &t.address)
            .map(|address| ProbeKind::Tcp { address })
    } else if let Some(c) = &p.command {
        argv(e, &at("command"), c);
        Some(ProbeKind::Command { argv: c.clone() })
    } else {
        let d = p.disk.as_ref().expect("counted above");
        Some(ProbeKind::Disk {
            path: resolve(base, &d.path),
            min_free_mib: d.min_free_mib,
        })
    };
    let interval = e.duration(
        &at("interval"),
        p.interval,
        Duration::from_millis(500),
        50 * MS,
    );
    let timeout = e.duration(
        &at("timeout"),
        p.timeout,
        Duration::from_millis(400),
        10 * MS,
    );
    let rise = e.range_u32(&at("rise"), p.rise, 2, 1, 100);
    let fall = e.range_u32(&at("fall"), p.fall, 2, 1, 100);
    Some(Probe {
        name: p.name.clone(),
        kind: kind?,
        interval,
        timeout,
        rise,
        fall,
    })
}

/// `upgrade`.
fn upgrade(e: &mut Errors, u: &file::Upgrade) -> Upgrade {
    let upgrade = Upgrade {
        keep_releases: e.range_u32("upgrade.keep_releases", u.keep_releases, 3, 1, 100),
        drain_timeout: e.duration(
            "upgrade.drain_timeout",
            u.drain_timeout,
            Duration::from_secs(30),
            MS,
        ),
        drain_settle: e.duration(
            "upgrade.drain_settle",
            u.drain_settle,
            Duration::from_secs(2),
            Duration::ZERO,
        ),
        start_timeout: e.duration(
            "upgrade.start_timeout",
            u.start_timeout,
            Duration::from_secs(60),
            100 * MS,
        ),
        smoke: u.smoke.clone(),
        smoke_timeout: e.duration(
            "upgrade.smoke_timeout",
            u.smoke_timeout,
            Duration::from_secs(30),
            10 * MS,
        ),
    };
    if let Some(s) = &u.smoke {
        argv(e, "upgrade.smoke", s);
    }
    upgrade
}

/// `gateway`: the admin API the agent asks about traffic during an upgrade.
fn gateway(e: &mut Errors, f: &file::FileConfig, base: &Path) -> Option<GatewayLink> {
    f.gateway.as_ref().and_then(|g| {
        let before = e.0.len();
        let given = g.admin.all();
        if given.is_empty() || given.len() > 2 {
            e.push("gateway.admin", "one URL, or the two of a gateway pair");
        }
        let admins: Vec<_> = given
            .iter()
            .filter_map(|a| url(e, "gateway.admin", a))
            .collect();
        let token = twinport_ops::token::read_token(&resolve(base, &g.token_file))
            .map_err(|why| e.push("gateway.token_file", why))
            .ok();
        let client = gateway_client(e, g, base);
        if e.0.len() > before {
            return None;
        }
        Some(GatewayLink {
            admins,
            token: token?,
            client: client?,
        })
    })
}

/// The HTTP client of the gateway link: the CA and client certificate of
/// `gateway` when given (an admin API off loopback has mutual TLS).
fn gateway_client(e: &mut Errors, g: &file::Gateway, base: &Path) -> Option<reqwest::Client> {
    let read = |e: &mut Errors, field: &str, p: &str| {
        std::fs::read(resolve(base, p))
            .map_err(|x| e.push(field, format!("{p}: {x}")))
            .ok()
    };
    let mut b = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .no_proxy();
    if let Some(ca) = &g.ca {
        let pem = read(e, "gateway.ca", ca)?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => {
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            }
            Ok(_) => e.push("gateway.ca", format!("{ca}: no PEM certificate in it")),
            Err(x) => e.push("gateway.ca", format!("{ca}: {x}")),
        }
    }
    match (&g.client_certificate, &g.client_key) {
        (Some(c), Some(k)) => {
            let mut pem = read(e, "gateway.client_certificate", c)?;
            pem.push(b'\n');
            pem.extend(read(e, "gateway.client_key", k)?);
            match reqwest::Identity::from_pem(&pem) {
                Ok(id) => b = b.identity(id),
                Err(x) => e.push("gateway.client_certificate", x.to_string()),
            }
        }
        (None, None) => {}
        _ => e.push(
            "gateway.client_key",
            "client_certificate and client_key go together",
        ),
    }
    b.build()
        .map_err(|x| e.push("gateway", format!("cannot set up the gateway link: {x}")))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_token() -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("twinport-agent-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let t = d.join("agent.token");
        std::fs::write(&t, "agent-token-0123456789\n").unwrap();
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o600)).unwrap();
        d
    }

    const GOOD: &str = "\
node: a
listen: 127.0.0.1:9081
control:
  token_file: agent.token
  audit_log: audit.log
state_dir: state
app:
  command: [\"{release}/app\", \"--version\", \"{version}\", \"--config\", \"{config_dir}/app.yaml\"]
probes:
  - name: app
    http: { url: \"http://127.0.0.1:8081/\", body_contains: ok }
  - name: port
    tcp: { address: 127.0.0.1:8081 }
    rise: 1
  - name: disk
    disk: { path: /, min_free_mib: 1 }
";

    #[test]
    fn a_good_file_gets_its_defaults() {
        let d = dir_with_token();
        let c = parse(&d.join("agent.yaml"), GOOD).unwrap();
        assert_eq!(c.node, "a");
        assert_eq!(c.control.listen, "127.0.0.1:9281".parse().unwrap());
        assert_eq!(c.state_dir, d.join("state"));
        assert_eq!(c.probes.len(), 3);
        assert_eq!((c.probes[1].rise, c.probes[1].fall), (1, 2));
        let App::Process { log, command, .. } = &c.app else {
            panic!("process mode")
        };
        assert_eq!(log, &d.join("state/app.log"));
        assert_eq!(command[4], format!("{}/app.yaml", d.display()));
        assert_eq!(command[0], "{release}/app", "filled in at start");
        assert_eq!(c.upgrade.keep_releases, 3);
        assert!(format!("{c:?}").contains("<redacted>"));
    }

    #[test]
    fn the_gateway_link_takes_one_gateway_or_a_pair() {
        let d = dir_with_token();
        let one =
            format!("{GOOD}gateway:\n  admin: http://127.0.0.1:9180\n  token_file: agent.token\n");
        let c = parse(&d.join("agent.yaml"), &one).unwrap();
        assert_eq!(c.gateway.unwrap().admins.len(), 1);
        let pair = format!(
            "{GOOD}gateway:\n  admin: [https://10.0.0.1:9180, https://10.0.0.2:9180]\n  token_file: agent.token\n"
        );
        let c = parse(&d.join("agent.yaml"), &pair).unwrap();
        let admins: Vec<String> = c
            .gateway
            .unwrap()
            .admins
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(admins, ["https://10.0.0.1:9180/", "https://10.0.0.2:9180/"]);
        let three = pair.replace("]\n", ", https://10.0.0.3:9180]\n");
        let err = parse(&d.join("agent.yaml"), &three)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gateway.admin") && err.contains("two of a gateway pair"),
            "{err}"
        );
        let half = format!("{pair}  client_certificate: agent.crt\n");
        let err = parse(&d.join("agent.yaml"), &half).unwrap_err().to_string();
        assert!(err.contains("gateway.client_key"), "{err}");
        let no_ca = format!("{pair}  ca: missing-ca.crt\n");
        let err = parse(&d.join("agent.yaml"), &no_ca)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gateway.ca") && err.contains("missing-ca.crt"),
            "{err}"
        );
    }

    #[test]
    fn every_error_names_its_field_and_line() {
        let d = dir_with_token();
        let text = GOOD
            .replace("node: a", "node: A!")
            .replace("tcp: { address: 127.0.0.1:8081 }", "tcp: { address: nowhere }")
            .replace("  audit_log: audit.log", "  audit_log: audit.log\n  listen: 0.0.0.0:9281")
            + "  - name: two\n    tcp: { address: 127.0.0.1:1 }\n    disk: { path: /, min_free_mib: 1 }\n";
        let err = parse(&d.join("agent.yaml"), &text).unwrap_err().to_string();
        assert!(err.contains("agent.yaml: invalid configuration"), "{err}");
        assert!(err.contains("node (line 1): `A!` must be"), "{err}");
        assert!(
            err.contains("control.listen (line 6): 0.0.0.0:9281 is not a loopback address"),
            "{err}"
        );
        assert!(
            err.contains("probes[1].tcp.address (line 14): `nowhere`"),
            "{err}"
        );
        assert!(
            err.contains("probes[3] (line 18): needs exactly one of"),
            "{err}"
        );
        let err = parse(
            &d.join("agent.yaml"),
            &GOOD.replace("state_dir", "statedir"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `statedir`"),
            "{err}"
        );
        let err = parse(
            &d.join("agent.yaml"),
            &GOOD.replace("agent.token", "missing.token"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("control.token_file (line 4): cannot read"),
            "{err}"
        );
    }
}
