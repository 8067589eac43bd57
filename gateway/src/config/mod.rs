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

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem with one field of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, such as `nodes[1].address`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
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

/// Reads, parses and validates the gateway file at `path`.
pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates `text` as if it had been read from `path` (relative
/// file names in it are resolved against `path`'s directory).
pub fn parse(path: &Path, text: &str) -> Result<GatewayConfig, ConfigError> {
    let file: file::FileConfig = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    GatewayConfig::from_file(file, base).map_err(|errors| ConfigError::Invalid {
        file: path.to_path_buf(),
        errors,
    })
}
