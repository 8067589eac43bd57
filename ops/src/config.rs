//! Configuration files in three steps, the same for every daemon:
//!
//! ```text
//!  file.yaml ──serde_yaml──▶ file types ──validate──▶ runtime types
//!             (shape; unknown     (values checked; every error collected
//!              keys refused)       as a FieldError, then given its line)
//! ```
//!
//! [`parse`] runs the steps for any pair of types; [`Errors`] is the
//! collector the validation step pushes into.

use crate::locate;
use serde::de::DeserializeOwned;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem with one field of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, such as `nodes[1].address`.
    pub field: String,
    pub message: String,
    /// Line of the field in the file (or of its nearest parent that is
    /// there), when known.
    pub line: Option<usize>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{} (line {l}): {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Why a configuration file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the file: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or a field has the wrong type or name; the
    /// message from serde_yaml carries the field path and the line.
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: invalid configuration:\n{}", list(.errors))]
    Invalid {
        file: PathBuf,
        errors: Vec<FieldError>,
    },
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads the file at `path` and hands its text to `parse`; also returns the
/// bytes that were read (`None` if the file could not be read), so that a
/// caller watching the file compares against exactly what was validated.
pub fn load_with_bytes<T>(
    path: &Path,
    parse: impl FnOnce(&Path, &str) -> Result<T, ConfigError>,
) -> (Option<Vec<u8>>, Result<T, ConfigError>) {
    match std::fs::read(path) {
        Ok(bytes) => {
            let parsed = match std::str::from_utf8(&bytes) {
                Ok(text) => parse(path, text),
                Err(e) => Err(ConfigError::Parse {
                    file: path.to_path_buf(),
                    message: format!("the file is not UTF-8 text: {e}"),
                }),
            };
            (Some(bytes), parsed)
        }
        Err(source) => (
            None,
            Err(ConfigError::Read {
                file: path.to_path_buf(),
                source,
            }),
        ),
    }
}

/// Parses `text` (as if read from `path`) into the file type `F`, then
/// validates it into `T` with `validate(file, directory of path)`; the
/// errors of the validation get their lines in `text`.
pub fn parse<F: DeserializeOwned, T>(
    path: &Path,
    text: &str,
    validate: impl FnOnce(F, &Path) -> Result<T, Vec<FieldError>>,
) -> Result<T, ConfigError> {
    let file: F = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Relative paths in the file are taken from the file's directory, made
    // absolute: a daemon that changes directory (a supervised app's working
    // directory, a daemonized gateway) still finds them.
    let dir = path.parent().unwrap_or(Path::new("."));
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    validate(file, &base).map_err(|mut errors| {
        let lines = locate::field_lines(text);
        for e in &mut errors {
            e.line = locate::line_of(&lines, &e.field);
        }
        ConfigError::Invalid {
            file: path.to_path_buf(),
            errors,
        }
    })
}

/// A path from the file, relative ones taken from the file's directory.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Whether `n` is a name of a node, probe, branch or group: 1-32
/// characters of a-z, 0-9, `-` and `_` (safe in metrics labels, URLs and
/// file names alike).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Collects every error of one file instead of stopping at the first.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
            line: None,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks `value` with [`valid_name`]; false (and the error said) if
    /// it is not one.
    pub fn name(&mut self, field: &str, value: &str) -> bool {
        let ok = valid_name(value);
        if !ok {
            self.push(
                field,
                format!("`{value}` must be 1-32 characters of a-z, 0-9, - or _"),
            );
        }
        ok
    }

    /// `Ok(value)` when nothing was pushed, else every error.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self.0)
        }
    }

    /// `value` as an `ip:port` address.
    pub fn addr(&mut self, field: &str, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(
                    field,
                    format!("`{value}` is not an address of the form ip:port (for example 127.0.0.1:8080)"),
                );
                None
            }
        }
    }

    /// `v` (or `default`) checked against `min..=max`.
    pub fn range_u32(
        &mut self,
        field: &str,
        v: Option<u32>,
        default: u32,
        min: u32,
        max: u32,
    ) -> u32 {
        let v = v.unwrap_or(default);
        if v < min || v > max {
            self.push(field, format!("{v} is out of range ({min} to {max})"));
        }
        v
    }

    /// Networks given as addresses or CIDRs (`10.0.0.0/8`, `::1`), each
    /// reported as `field[i]` if it is neither; host bits are cleared.
    pub fn networks(&mut self, field: &str, list: &[String]) -> Vec<ipnet::IpNet> {
        list.iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let parsed = p
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
                match parsed {
                    Ok(n) => Some(n.trunc()),
                    Err(_) => {
                        self.push(
                            format!("{field}[{i}]"),
                            format!("`{p}` is not an address or CIDR (10.0.0.0/8, ::1)"),
                        );
                        None
                    }
                }
            })
            .collect()
    }

    /// `v` (or `default`), at least `min`.
    pub fn duration(
        &mut self,
        field: &str,
        v: Option<Duration>,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let v = v.unwrap_or(default);
        if v < min {
            self.push(
                field,
                format!(
                    "{} is too short (at least {})",
                    humantime::format_duration(v),
                    humantime::format_duration(min)
                ),
            );
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_addresses_or_cidrs_and_errors_name_the_entry() {
        let mut e = Errors(Vec::new());
        let list = ["10.1.2.3/8", "::1", "nope"].map(String::from);
        let nets = e.networks("proxies", &list);
        assert_eq!(
            nets,
            ["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
        );
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].field, "proxies[2]");
        assert!(e.0[0].message.contains("`nope`"), "{:?}", e.0);
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct F {
        listen: String,
        limit: Option<u32>,
    }

    fn validate(f: F, _: &Path) -> Result<(SocketAddr, u32), Vec<FieldError>> {
        let mut e = Errors::default();
        let a = e.addr("listen", &f.listen);
        let l = e.range_u32("limit", f.limit, 5, 1, 10);
        e.finish(|| (a.expect("checked"), l))
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let p = Path::new("/etc/x.yaml");
        assert_eq!(
            parse(p, "listen: 127.0.0.1:1\n", validate).unwrap(),
            ("127.0.0.1:1".parse().unwrap(), 5)
        );
        let err = parse(p, "listen: nowhere\nlimit: 11\n", validate)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/x.yaml: invalid configuration"),
            "{err}"
        );
        assert!(
            err.contains("listen (line 1): `nowhere` is not an address"),
            "{err}"
        );
        assert!(
            err.contains("limit (line 2): 11 is out of range (1 to 10)"),
            "{err}"
        );
        let err = parse(p, "listen: x\nlimt: 1\n", validate)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `limt`"), "{err}");
    }
}
