//! The ticketing service's configuration: the YAML file's types ([`file`])
//! and the validated runtime form ([`Config`]). Every error is collected
//! and named by file, line and field (`twinport_ops::config`).

use crate::calendar::{Hours, Week, WEEKDAYS};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use twinport_ops::config::{self as opsconfig, resolve, ConfigError, Errors, FieldError};

pub mod file {
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct FileConfig {
        /// The node's name, reported by `/ready`.
        pub node: String,
        pub listen: String,
        /// Where Prometheus scrapes `/metrics`, `host:port` (keep it on
        /// loopback or a management network); absent: no metrics. Never
        /// on `listen`, which the gateway exposes to everyone.
        pub metrics_listen: Option<String>,
        /// `sqlite://FILE` (relative to this file) or `postgres://...`.
        pub database: String,
        pub max_connections: Option<u32>,
        /// Base of the tracking URLs printed as QR codes on tickets.
        pub public_url: String,
        /// Tickets per second one kiosk (client address) may ask for
        /// (default 5; 0: no limit); over it: 429.
        pub kiosk_rate_limit: Option<u32>,
        /// Proxies whose `X-Real-IP` names the client (default: loopback,
        /// where the gateway runs in the local set-up). The Twinport
        /// gateway replaces any `X-Real-IP` a client sends.
        pub trusted_proxies: Option<Vec<String>>,
        /// How long an `Idempotency-Key` is remembered (default 48h); the
        /// day close purges older ones.
        #[serde(default, with = "humantime_serde")]
        pub idempotency_retention: Option<Duration>,
        pub branches: Vec<Branch>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Branch {
        pub id: String,
        pub name: String,
        pub time_zone: Option<String>,
        /// Per weekday (`mon`..`sun`): `HH:MM-HH:MM` or `closed`; absent: always open.
        pub opening_hours: Option<BTreeMap<String, String>>,
        #[serde(default, with = "humantime_serde")]
        pub booking_window: Option<Duration>,
        /// How long a ticket transferred to a desk waits for that desk
        /// alone before any desk of its service may call it (default 10m).
        #[serde(default, with = "humantime_serde")]
        pub transfer_max_wait: Option<Duration>,
        pub tokens: Tokens,
        pub services: Vec<Service>,
        pub desks: Vec<Desk>,
        #[serde(default)]
        pub priority_groups: Vec<PriorityGroup>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tokens {
        pub kiosk: String,
        pub desk: String,
        pub manager: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Names {
        pub pl: String,
        pub en: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Service {
        pub prefix: String,
        pub name: Names,
        #[serde(default, with = "humantime_serde")]
        pub target_wait: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        pub max_wait: Option<Duration>,
        /// Expected service time, until there are measured ones.
        #[serde(default, with = "humantime_serde")]
        pub service_time: Option<Duration>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Desk {
        pub id: String,
        /// Services in the desk's order of preference.
        pub services: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PriorityGroup {
        pub id: String,
        pub name: Names,
        /// Waiting time a ticket of this group counts as having already.
        #[serde(with = "humantime_serde")]
        pub boost: Duration,
    }
}

/// A name in Polish and English.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Names {
    pub pl: String,
    pub en: String,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub prefix: String,
    pub name: Names,
    pub target_wait: Duration,
    pub max_wait: Duration,
    pub service_time: Duration,
}

#[derive(Debug, Clone)]
pub struct Desk {
    pub id: String,
    pub services: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PriorityGroup {
    pub id: String,
    pub name: Names,
    pub boost: Duration,
}

#[derive(Clone)]
pub struct Tokens {
    pub kiosk: Arc<[u8]>,
    pub desk: Arc<[u8]>,
    pub manager: Arc<[u8]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct Branch {
    pub id: String,
    pub name: String,
    pub tz: chrono_tz::Tz,
    pub hours: Week,
    pub booking_window: Duration,
    pub transfer_max_wait: Duration,
    pub tokens: Tokens,
    pub services: Vec<Service>,
    pub desks: Vec<Desk>,
    pub priority_groups: Vec<PriorityGroup>,
}

impl Branch {
    pub fn service(&self, prefix: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.prefix == prefix)
    }

    pub fn desk(&self, id: &str) -> Option<&Desk> {
        self.desks.iter().find(|d| d.id == id)
    }

    pub fn priority_group(&self, id: &str) -> Option<&PriorityGroup> {
        self.priority_groups.iter().find(|g| g.id == id)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    /// The database URL, a SQLite path made absolute.
    pub database: String,
    pub max_connections: u32,
    pub public_url: String,
    pub kiosk_rate_limit: u32,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub idempotency_retention: Duration,
    pub branches: BTreeMap<String, Branch>,
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    opsconfig::load_with_bytes(path, parse).1
}

pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    opsconfig::parse(path, text, Config::from_file)
}

const MIN: Duration = Duration::from_secs(60);

impl Config {
    /// Checks every field of `f` and builds the runtime configuration, or
    /// returns every problem found; relative paths are taken from `base`.
    pub fn from_file(f: file::FileConfig, base: &Path) -> Result<Config, Vec<FieldError>> {
        let mut e = Errors::default();
        e.name("node", &f.node);
        let listen = e.addr("listen", &f.listen);
        let metrics_listen = metrics_listen(&mut e, &f, listen);
        let idempotency_retention = e.duration(
            "idempotency_retention",
            f.idempotency_retention,
            48 * 60 * MIN,
            60 * MIN,
        );
        let database = database(&mut e, &f.database, base);
        let max_connections = e.range_u32("max_connections", f.max_connections, 10, 1, 200);
        if !(f.public_url.starts_with("http://") || f.public_url.starts_with("https://")) {
            e.push(
                "public_url",
                format!("`{}` is not an http:// or https:// URL", f.public_url),
            );
        }
        if f.branches.is_empty() {
            e.push("branches", "at least one branch is needed");
        }
        let mut branches = BTreeMap::new();
        for (i, b) in f.branches.iter().enumerate() {
            let at = format!("branches[{i}]");
            if e.name(&format!("{at}.id"), &b.id) && branches.contains_key(&b.id) {
                e.push(
                    format!("{at}.id"),
                    format!("`{}` is used by an earlier branch", b.id),
                );
            }
            branches.insert(b.id.clone(), branch(&mut e, &at, b, base));
        }
        let trusted_proxies = match &f.trusted_proxies {
            None => vec![
                "127.0.0.0/8".parse().expect("valid"),
                "::1/128".parse().expect("valid"),
            ],
            Some(list) => e.networks("trusted_proxies", list),
        };
        let Some(listen) = listen else {
            return Err(e.0);
        };
        e.finish(|| Config {
            node: f.node,
            listen,
            metrics_listen,
            idempotency_retention,
            database,
            max_connections,
            kiosk_rate_limit: f.kiosk_rate_limit.unwrap_or(5),
            trusted_proxies,
            public_url: f.public_url.trim_end_matches('/').to_string(),
            branches,
        })
    }
}

/// `metrics_listen`: an address of its own, never the API's.
fn metrics_listen(
    e: &mut Errors,
    f: &file::FileConfig,
    listen: Option<SocketAddr>,
) -> Option<SocketAddr> {
    let addr = f
        .metrics_listen
        .as_deref()
        .and_then(|a| e.addr("metrics_listen", a));
    if addr.is_some() && addr == listen {
        e.push(
            "metrics_listen",
            format!(
                "{} is already used by listen (the API, which the gateway exposes): give metrics their own port",
                f.listen
            ),
        );
    }
    addr
}

/// The database URL, a SQLite file made absolute (and created if missing).
fn database(e: &mut Errors, url: &str, base: &Path) -> String {
    if let Some(p) = url.strip_prefix("sqlite://") {
        let (file, query) = p.split_once('?').unwrap_or((p, ""));
        let abs = resolve(base, file);
        let query = if query.is_empty() { "mode=rwc" } else { query };
        format!("sqlite://{}?{query}", abs.display())
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        url.to_string()
    } else {
        e.push(
            "database",
            "must be sqlite://FILE or postgres://USER@HOST:PORT/DB",
        );
        String::new()
    }
}

/// One branch; `at` is its field path (`branches[0]`).
fn branch(e: &mut Errors, at: &str, b: &file::Branch, base: &Path) -> Branch {
    let tz_name = b.time_zone.as_deref().unwrap_or("Europe/Warsaw");
    let tz = match tz_name.parse::<chrono_tz::Tz>() {
        Ok(tz) => tz,
        Err(_) => {
            e.push(
                format!("{at}.time_zone"),
                format!(
                    "`{tz_name}` is not a time zone of the tz database (for example Europe/Warsaw)"
                ),
            );
            chrono_tz::UTC
        }
    };
    let hours = opening_hours(e, at, b);
    let transfer_max_wait = e.duration(
        &format!("{at}.transfer_max_wait"),
        b.transfer_max_wait,
        10 * MIN,
        MIN,
    );
    let tokens = tokens(e, at, &b.tokens, base);
    if b.services.is_empty() {
        e.push(format!("{at}.services"), "at least one service is needed");
    }
    let mut services: Vec<Service> = Vec::new();
    for (j, s) in b.services.iter().enumerate() {
        let s = service(e, &format!("{at}.services[{j}]"), s, &services);
        services.push(s);
    }
    if b.desks.is_empty() {
        e.push(format!("{at}.desks"), "at least one desk is needed");
    }
    let mut desks: Vec<Desk> = Vec::new();
    for (j, d) in b.desks.iter().enumerate() {
        let d = desk(e, &format!("{at}.desks[{j}]"), d, b, &desks);
        desks.push(d);
    }
    let mut groups: Vec<PriorityGroup> = Vec::new();
    for (j, g) in b.priority_groups.iter().enumerate() {
        if !opsconfig::valid_name(&g.id) || groups.iter().any(|x| x.id == g.id) {
            e.push(
                format!("{at}.priority_groups[{j}].id"),
                format!("`{}` must be a unique id of a-z, 0-9, - or _", g.id),
            );
        }
        groups.push(PriorityGroup {
            id: g.id.clone(),
            name: names(&g.name),
            boost: g.boost,
        });
    }
    Branch {
        id: b.id.clone(),
        name: b.name.clone(),
        tz,
        hours,
        booking_window: b.booking_window.unwrap_or(15 * MIN),
        transfer_max_wait,
        tokens,
        services,
        desks,
        priority_groups: groups,
    }
}

fn names(n: &file::Names) -> Names {
    Names {
        pl: n.pl.clone(),
        en: n.en.clone(),
    }
}

/// `opening_hours`: per weekday `HH:MM-HH:MM` or `closed`; absent: always open.
fn opening_hours(e: &mut Errors, at: &str, b: &file::Branch) -> Week {
    let Some(map) = &b.opening_hours else {
        return Week::always();
    };
    let mut week = Week::default();
    for (k, v) in map {
        let field = format!("{at}.opening_hours.{k}");
        match WEEKDAYS.iter().position(|(d, _)| d == k) {
            None => e.push(
                field,
                "is not a weekday: use mon, tue, wed, thu, fri, sat or sun",
            ),
            Some(d) if v == "closed" => week.0[d] = None,
            Some(d) => match Hours::parse(v) {
                Some(h) => week.0[d] = Some(h),
                None => e.push(
                    field,
                    format!("`{v}` is not HH:MM-HH:MM (opening before closing) or closed"),
                ),
            },
        }
    }
    week
}

/// The branch's three token files, read; three different tokens.
fn tokens(e: &mut Errors, at: &str, t: &file::Tokens, base: &Path) -> Tokens {
    let mut read = |k: &str, p: &str| {
        twinport_ops::token::read_token(&resolve(base, p))
            .map_err(|why| e.push(format!("{at}.tokens.{k}"), why))
            .unwrap_or_else(|_| Arc::from(&b""[..]))
    };
    let tokens = Tokens {
        kiosk: read("kiosk", &t.kiosk),
        desk: read("desk", &t.desk),
        manager: read("manager", &t.manager),
    };
    let same = tokens.kiosk == tokens.desk
        || tokens.kiosk == tokens.manager
        || tokens.desk == tokens.manager;
    let tokens_field = format!("{at}.tokens");
    if same && !e.0.iter().any(|x| x.field.starts_with(&tokens_field)) {
        e.push(
            tokens_field,
            "kiosk, desk and manager need three different tokens",
        );
    }
    tokens
}

/// One service; `earlier` are the branch's services before it.
fn service(e: &mut Errors, at: &str, s: &file::Service, earlier: &[Service]) -> Service {
    let ok = (1..=2).contains(&s.prefix.len()) && s.prefix.bytes().all(|c| c.is_ascii_uppercase());
    if !ok {
        e.push(
            format!("{at}.prefix"),
            format!(
                "`{}` must be one or two capital letters (A, B, ...)",
                s.prefix
            ),
        );
    } else if earlier.iter().any(|x| x.prefix == s.prefix) {
        e.push(
            format!("{at}.prefix"),
            format!("`{}` is used by an earlier service", s.prefix),
        );
    }
    let second = Duration::from_secs(1);
    let target_wait = e.duration(
        &format!("{at}.target_wait"),
        s.target_wait,
        10 * MIN,
        second,
    );
    let max_wait = e.duration(
        &format!("{at}.max_wait"),
        s.max_wait,
        3 * target_wait,
        second,
    );
    if max_wait < target_wait {
        e.push(format!("{at}.max_wait"), "is shorter than target_wait");
    }
    let service_time = e.duration(
        &format!("{at}.service_time"),
        s.service_time,
        5 * MIN,
        second,
    );
    Service {
        prefix: s.prefix.clone(),
        name: names(&s.name),
        target_wait,
        max_wait,
        service_time,
    }
}

/// One desk of branch `b`; `earlier` are the desks before it.
fn desk(e: &mut Errors, at: &str, d: &file::Desk, b: &file::Branch, earlier: &[Desk]) -> Desk {
    if d.id.is_empty() || d.id.len() > 8 || !d.id.bytes().all(|c| c.is_ascii_alphanumeric()) {
        e.push(
            format!("{at}.id"),
            format!("`{}` must be 1-8 letters or digits", d.id),
        );
    } else if earlier.iter().any(|x| x.id == d.id) {
        e.push(
            format!("{at}.id"),
            format!("`{}` is used by an earlier desk", d.id),
        );
    }
    if d.services.is_empty() {
        e.push(
            format!("{at}.services"),
            "a desk serves at least one service",
        );
    }
    for (k, s) in d.services.iter().enumerate() {
        if !b.services.iter().any(|x| &x.prefix == s) {
            e.push(
                format!("{at}.services[{k}]"),
                format!("`{s}` is not a service of this branch"),
            );
        }
    }
    Desk {
        id: d.id.clone(),
        services: d.services.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn dir_with_tokens(tag: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let d =
            std::env::temp_dir().join(format!("twinport-ticketing-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for (n, t) in [
            ("kiosk", "kiosk-token-0123456789"),
            ("desk", "desk-token-01234567890"),
            ("manager", "manager-token-0123456789"),
        ] {
            let p = d.join(format!("{n}.token"));
            std::fs::write(&p, t).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        d
    }

    pub(crate) const GOOD: &str = "\
node: a
listen: 127.0.0.1:8081
database: sqlite://tickets.db
public_url: http://127.0.0.1:8080/
branches:
  - id: centrum
    name: Warszawa Centrum
    opening_hours: { mon: 08:00-18:00, sun: closed }
    tokens: { kiosk: kiosk.token, desk: desk.token, manager: manager.token }
    services:
      - { prefix: A, name: { pl: Dowody, en: ID cards }, target_wait: 10m }
      - { prefix: B, name: { pl: Paszporty, en: Passports } }
    desks:
      - { id: \"1\", services: [A, B] }
    priority_groups:
      - { id: disabled, name: { pl: Niepełnosprawni, en: Disabled }, boost: 15m }
";

    #[test]
    fn a_good_file_gets_its_defaults() {
        let d = dir_with_tokens("good");
        let c = parse(&d.join("t.yaml"), GOOD).unwrap();
        assert_eq!(
            c.database,
            format!("sqlite://{}?mode=rwc", d.join("tickets.db").display())
        );
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        let b = &c.branches["centrum"];
        assert_eq!(b.tz, chrono_tz::Europe::Warsaw);
        assert_eq!(b.service("A").unwrap().max_wait, 30 * MIN);
        assert_eq!(b.service("B").unwrap().target_wait, 10 * MIN);
        assert!(b.hours.0[0].is_some() && b.hours.0[6].is_none() && b.hours.0[1].is_none());
        assert_eq!(b.priority_group("disabled").unwrap().boost, 15 * MIN);
        assert_eq!(b.transfer_max_wait, 10 * MIN);
        assert_eq!(c.idempotency_retention, 48 * 60 * MIN);
        assert_eq!(c.metrics_listen, None);
    }

    #[test]
    fn metrics_have_their_own_port_and_limits_their_floor() {
        let d = dir_with_tokens("metrics");
        let text = GOOD
            .replace(
                "listen: 127.0.0.1:8081\n",
                "listen: 127.0.0.1:8081\nmetrics_listen: 127.0.0.1:8081\nidempotency_retention: 5m\n",
            )
            .replace(
                "    name: Warszawa Centrum\n",
                "    name: Warszawa Centrum\n    transfer_max_wait: 10s\n",
            );
        let err = parse(&d.join("t.yaml"), &text).unwrap_err().to_string();
        for want in [
            "metrics_listen (line 3): 127.0.0.1:8081 is already used by listen",
            "idempotency_retention (line 4): 5m is too short",
            "branches[0].transfer_max_wait (line 10): 10s is too short",
        ] {
            assert!(err.contains(want), "missing `{want}` in:\n{err}");
        }
        let ok = GOOD.replace(
            "listen: 127.0.0.1:8081\n",
            "listen: 127.0.0.1:8081\nmetrics_listen: 127.0.0.1:9381\n",
        );
        let c = parse(&d.join("t.yaml"), &ok).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9381".parse().unwrap()));
    }

    #[test]
    fn every_error_names_its_field_and_line() {
        let d = dir_with_tokens("bad");
        let text = GOOD
            .replace("sun: closed", "sun: 18:00-08:00")
            .replace("prefix: B", "prefix: a1")
            .replace("services: [A, B]", "services: [A, C]")
            .replace(
                "name: Warszawa Centrum",
                "name: Warszawa Centrum\n    time_zone: Mars/Olympus",
            )
            .replace("manager: manager.token", "manager: desk.token");
        let err = parse(&d.join("t.yaml"), &text).unwrap_err().to_string();
        for want in [
            "branches[0].time_zone (line 8): `Mars/Olympus` is not a time zone",
            "branches[0].opening_hours.sun (line 9): `18:00-08:00` is not HH:MM-HH:MM",
            "branches[0].tokens (line 10): kiosk, desk and manager need three different tokens",
            "branches[0].services[1].prefix (line 13): `a1` must be one or two capital letters",
            "branches[0].desks[0].services[1] (line 15): `C` is not a service of this branch",
        ] {
            assert!(err.contains(want), "missing `{want}` in:\n{err}");
        }
    }
}
