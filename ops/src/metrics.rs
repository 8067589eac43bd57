//! Prometheus registries named the same way in every daemon:
//! `twinport_<subsystem>_<name>`, with the node's name as a constant label.

use prometheus::core::Collector;
use prometheus::Registry;

/// A registry whose metrics are prefixed `twinport_<subsystem>` and carry
/// `node="<node>"`.
pub fn registry(subsystem: &str, node: &str) -> Registry {
    Registry::new_custom(
        Some(format!("twinport_{subsystem}")),
        Some([("node".to_string(), node.to_string())].into()),
    )
    .expect("a valid prefix and label")
}

/// Registers `c` in `r` and hands it back (names are fixed in the code,
/// so a clash is a programming error).
pub fn register<T: Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

/// The text exposition of `r`.
pub fn render(r: &Registry) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&r.gather())
        .unwrap_or_default()
}
