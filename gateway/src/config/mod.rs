//! Gateway configuration: file → validation → runtime state.
//!
//! ```text
//!  gateway.yaml ──serde_yaml──▶ file::FileConfig ──validate()──▶ runtime::GatewayConfig
//!                 (shape, unknown keys refused)    (values checked, every error
//!                                                   collected with its field)
//! ```
//!
//! Nothing outside this module reads [`file`] types: the proxy, the health
//! checker and the failover logic only ever see [`GatewayConfig`], whose
//! fields are already `SocketAddr`s, `Duration`s and enums.

pub mod file;
mod runtime;

pub use runtime::*;
pub use twinport_ops::config::{ConfigError, FieldError};

use std::path::Path;

/// Reads, parses and validates the gateway file at `path`.
pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
    load_with_bytes(path).1
}

/// Like [`load`], and also returns the bytes that were read (`None` if the
/// file could not be read), so that a caller watching the file compares
/// against exactly what was validated.
pub fn load_with_bytes(path: &Path) -> (Option<Vec<u8>>, Result<GatewayConfig, ConfigError>) {
    twinport_ops::config::load_with_bytes(path, parse)
}

/// Parses and validates `text` as if it had been read from `path` (relative
/// file names in it are resolved against `path`'s directory).
pub fn parse(path: &Path, text: &str) -> Result<GatewayConfig, ConfigError> {
    twinport_ops::config::parse(path, text, GatewayConfig::from_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
listeners:
  http: 127.0.0.1:8080
nodes:
  - name: a
    address: 127.0.0.1:8081
  - name: b
    address: 127.0.0.1:8082
    agent: 127.0.0.1:9082
";

    #[test]
    fn defaults_detect_a_hung_node_within_a_second() {
        let c = parse(Path::new("/etc/twinport/gateway.yaml"), MINIMAL).unwrap();
        assert_eq!(c.mode, Mode::ActiveStandby);
        assert_eq!(c.primary, 0);
        assert!(c.health.detection_bound() <= std::time::Duration::from_secs(1));
        // The agent defaults to the application address.
        assert_eq!(c.nodes[0].agent, c.nodes[0].address);
        assert_eq!(c.nodes[1].agent.port(), 9082);
        // Relative paths are resolved against the file's directory.
        let with_pid = format!("{MINIMAL}server:\n  pid_file: run/gw.pid\n");
        let c = parse(Path::new("/etc/twinport/gateway.yaml"), &with_pid).unwrap();
        assert_eq!(c.server.pid_file, Path::new("/etc/twinport/run/gw.pid"));
    }

    #[test]
    fn every_error_is_collected_with_its_field() {
        let text = MINIMAL.replace("127.0.0.1:8082", "127.0.0.1:8081")
            + "mode: round-robin\nfailback:\n  hold_down: 1s\nflap_damping:\n  hold: 10s\n  max_hold: 1s\n";
        let err = parse(Path::new("g.yaml"), &text).unwrap_err();
        let ConfigError::Invalid { file, errors } = err else {
            panic!("not a validation error")
        };
        assert_eq!(file, Path::new("g.yaml"));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["mode", "nodes[1].address", "flap_damping.max_hold"]
        );
    }

    #[test]
    fn affinity_is_checked_field_by_field() {
        let c = parse(Path::new("g.yaml"), MINIMAL).unwrap();
        assert_eq!(c.affinity.mode, AffinityMode::None);
        let dir = std::env::temp_dir().join(format!("twinport-aff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short.key");
        std::fs::write(&short, "only-16-chars-xx\n").unwrap();
        let good = dir.join("good.key");
        std::fs::write(&good, "0123456789abcdef0123456789abcdef\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        for f in [&short, &good] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let file = dir.join("g.yaml");
        let fields = |extra: &str| -> Vec<String> {
            match parse(&file, &format!("{MINIMAL}affinity:\n{extra}")) {
                Ok(_) => Vec::new(),
                Err(ConfigError::Invalid { errors, .. }) => {
                    errors.into_iter().map(|e| e.field).collect()
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(fields("  mode: sticky\n"), ["affinity.mode"]);
        assert_eq!(fields("  mode: cookie\n"), ["affinity.secret_file"]);
        assert_eq!(
            fields("  mode: cookie\n  secret_file: short.key\n"),
            ["affinity.secret_file"]
        );
        assert_eq!(
            fields(
                "  mode: cookie\n  secret_file: good.key\n  cookie: \"a b\"\n  max_entries: 5\n"
            ),
            ["affinity.cookie", "affinity.max_entries"]
        );
        assert_eq!(
            fields("  mode: app-cookie\n  cookie: X\n"),
            ["affinity.cookie"]
        );
        let c = parse(
            &file,
            &format!("{MINIMAL}affinity:\n  mode: app-cookie\n  app_cookie: PHPSESSID\n  drain_timeout: 5m\n"),
        )
        .unwrap();
        assert_eq!(c.affinity.mode, AffinityMode::AppCookie);
        assert_eq!(c.affinity.cookie, "PHPSESSID");
        assert_eq!(
            c.affinity.drain_timeout,
            std::time::Duration::from_secs(300)
        );
        let c = parse(
            &file,
            &format!("{MINIMAL}affinity:\n  mode: cookie\n  secret_file: good.key\n"),
        )
        .unwrap();
        assert_eq!(c.affinity.cookie, "TWINPORT_AFFINITY");
        assert!(c.affinity.codec.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_same_address_twice_among_listeners_is_refused() {
        let text = MINIMAL.replace(
            "  http: 127.0.0.1:8080\n",
            "  http: 127.0.0.1:8080\n  metrics: 127.0.0.1:8080\n",
        );
        let err = parse(Path::new("g.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains(
                "listeners.metrics (line 3): 127.0.0.1:8080 is already used by listeners.http"
            ),
            "{err}"
        );
    }
}
