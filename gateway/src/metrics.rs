//! Prometheus metrics (names fixed by docs/operator-contract.md) and their HTTP listener.
//!
//! Everything is registered in prometheus' default registry, the one
//! pingora's own tooling reads. Per-request paths never look a label set
//! up: each node holds its own counter handles (see [`crate::node`]).

use crate::failover::Cause;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Encoder, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, TextEncoder,
};
use std::sync::LazyLock;

pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub node_up: IntGaugeVec,
    pub node_role: IntGaugeVec,
    pub node_state: IntGaugeVec,
    pub inflight: IntGaugeVec,
    pub failovers: IntCounterVec,
    pub retries: IntCounterVec,
    pub health_checks: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub passive_failures: IntCounterVec,
    pub sessions_cut: IntCounterVec,
    pub dns_resolutions: IntCounterVec,
    pub role_changes: IntCounterVec,
    pub tls_handshakes: IntCounterVec,
    pub rate_limited: IntCounter,
    pub bodies_too_large: IntCounter,
    pub certificate_expiry: IntGaugeVec,
    pub affinity_moved: IntCounterVec,
    pub affinity_sessions: IntGaugeVec,
    pub affinity_table_entries: IntGauge,
    pub affinity_rejected: IntCounterVec,
    pub vrrp_state: IntGaugeVec,
    pub pair_peer_up: IntGaugeVec,
    pub pair_changes_applied: IntCounter,
}

/// Every `reason` of `twinport_affinity_moved_total`: why a request that
/// carried a node's affinity went to the twin (see `proxy.rs`).
pub const AFFINITY_MOVE_REASONS: [&str; 5] = ["down", "drain", "maintenance", "role", "retry"];

/// Every `kind` of `twinport_passive_failures_total` (see `proxy.rs`).
pub const PASSIVE_KINDS: [&str; 6] = [
    "connect_refused",
    "connect_timeout",
    "connect_error",
    "timeout",
    "connection_reset",
    "protocol_error",
];

/// Every `reason` of `twinport_retries_total` (see `proxy.rs`).
pub const RETRY_REASONS: [&str; 8] = [
    "connect_refused",
    "connect_timeout",
    "connect_error",
    "timeout",
    "node_down",
    "stale_keepalive",
    "connection_reset",
    "protocol_error",
];

/// Latency buckets from 1 ms to 30 s: the interesting range for a portal.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics {
    requests: register_int_counter_vec!(
        "twinport_requests_total",
        "Requests answered by the gateway, by the node that answered (none: no node could) and status class",
        &["node", "code_class"]
    )
    .expect("metric registers once"),
    request_duration: register_histogram_vec!(
        "twinport_request_duration_seconds",
        "Time from request header to the end of the response, by node",
        &["node"],
        BUCKETS.to_vec()
    )
    .expect("metric registers once"),
    node_up: register_int_gauge_vec!(
        "twinport_node_up",
        "1 if the node is considered healthy",
        &["node"]
    )
    .expect("metric registers once"),
    node_role: register_int_gauge_vec!(
        "twinport_node_role",
        "1 for the node's current role",
        &["node", "role"]
    )
    .expect("metric registers once"),
    node_state: register_int_gauge_vec!(
        "twinport_node_state",
        "1 for the node's current state as the gateway sees it",
        &["node", "state"]
    )
    .expect("metric registers once"),
    inflight: register_int_gauge_vec!(
        "twinport_inflight_requests",
        "Requests currently sent to the node and not finished",
        &["node"]
    )
    .expect("metric registers once"),
    failovers: register_int_counter_vec!(
        "twinport_failovers_total",
        "Unplanned moves of traffic from one node to its twin, by cause",
        &["reason"]
    )
    .expect("metric registers once"),
    retries: register_int_counter_vec!(
        "twinport_retries_total",
        "Requests retried on the twin, by reason",
        &["reason"]
    )
    .expect("metric registers once"),
    health_checks: register_int_counter_vec!(
        "twinport_health_checks_total",
        "Active readiness checks, by node and result",
        &["node", "result"]
    )
    .expect("metric registers once"),
    config_reloads: register_int_counter_vec!(
        "twinport_config_reloads_total",
        "Configuration reloads, by result",
        &["result"]
    )
    .expect("metric registers once"),
    config_generation: register_int_gauge!(
        "twinport_config_generation",
        "Generation of the configuration in force (1 at start, +1 per good reload)"
    )
    .expect("metric registers once"),
    passive_failures: register_int_counter_vec!(
        "twinport_passive_failures_total",
        "Failures the proxy saw on real requests, by node and kind",
        &["node", "kind"]
    )
    .expect("metric registers once"),
    sessions_cut: register_int_counter_vec!(
        "twinport_sessions_cut_total",
        "Upstream connections cut because their node was declared down",
        &["node"]
    )
    .expect("metric registers once"),
    dns_resolutions: register_int_counter_vec!(
        "twinport_dns_resolutions_total",
        "Lookups of node host names, by node and result (ok, failed)",
        &["node", "result"]
    )
    .expect("metric registers once"),
    role_changes: register_int_counter_vec!(
        "twinport_role_changes_total",
        "Every change of the active-standby primary, planned or not, by cause",
        &["reason"]
    )
    .expect("metric registers once"),
    tls_handshakes: register_int_counter_vec!(
        "twinport_tls_handshakes_total",
        "TLS handshakes on the HTTPS listener by stage: started (connection accepted), completed, and resumed (completed without a full handshake, from the session cache or a ticket); started minus completed is failed or still running",
        &["stage"]
    )
    .expect("metric registers once"),
    rate_limited: register_int_counter!(
        "twinport_rate_limited_total",
        "Requests answered 429 because their client address was over clients.rate_limit"
    )
    .expect("metric registers once"),
    bodies_too_large: register_int_counter!(
        "twinport_request_body_too_large_total",
        "Requests answered 413 because their body was over clients.max_body_bytes"
    )
    .expect("metric registers once"),
    certificate_expiry: register_int_gauge_vec!(
        "twinport_tls_certificate_expiry_timestamp_seconds",
        "Unix time at which the certificate in force on the listener expires (notAfter of its leaf)",
        &["listener"]
    )
    .expect("metric registers once"),
    affinity_moved: register_int_counter_vec!(
        "twinport_affinity_moved_total",
        "Requests whose session affinity moved to the twin, by why their node could not take them (down, drain, maintenance, role: active-standby primary changed, retry: the node failed this request)",
        &["reason"]
    )
    .expect("metric registers once"),
    affinity_sessions: register_int_gauge_vec!(
        "twinport_affinity_sessions",
        "Distinct session affinities seen per node within affinity.idle_timeout",
        &["node"]
    )
    .expect("metric registers once"),
    affinity_table_entries: register_int_gauge!(
        "twinport_affinity_table_entries",
        "Sessions the gateway remembers (bounded by affinity.max_entries)"
    )
    .expect("metric registers once"),
    affinity_rejected: register_int_counter_vec!(
        "twinport_affinity_cookies_rejected_total",
        "Gateway affinity cookies ignored, by reason (malformed, forged, expired); the request went by weight",
        &["reason"]
    )
    .expect("metric registers once"),
    vrrp_state: register_int_gauge_vec!(
        "twinport_gateway_vrrp_state",
        "1 for what keepalived last told this gateway it is (MASTER holds the virtual IP; UNKNOWN: no word from keepalived)",
        &["state"]
    )
    .expect("metric registers once"),
    pair_peer_up: register_int_gauge_vec!(
        "twinport_pair_peer_up",
        "1 while the last exchange of operator state with the peer gateway succeeded (only with a pair)",
        &["peer"]
    )
    .expect("metric registers once"),
    pair_changes_applied: register_int_counter!(
        "twinport_pair_changes_applied_total",
        "Operator changes (drain, maintenance, switchover) made on the peer gateway and applied here"
    )
    .expect("metric registers once"),
};
    // Every series whose label values are known in advance exists from the
    // start with 0, so that rate() and alerts see the first event and
    // dashboards show 0 rather than "no data".
    for cause in Cause::ALL {
        m.role_changes.with_label_values(&[cause.as_str()]);
        if cause.is_failure() {
            m.failovers.with_label_values(&[cause.as_str()]);
        }
    }
    for reason in RETRY_REASONS {
        m.retries.with_label_values(&[reason]);
    }
    for result in ["ok", "failed"] {
        m.config_reloads.with_label_values(&[result]);
    }
    for reason in AFFINITY_MOVE_REASONS {
        m.affinity_moved.with_label_values(&[reason]);
    }
    for r in crate::affinity::Rejected::ALL {
        m.affinity_rejected.with_label_values(&[r.as_str()]);
    }
    for stage in ["started", "completed", "resumed"] {
        m.tls_handshakes.with_label_values(&[stage]);
    }
    m.set_vrrp(crate::pair::Vrrp::Unknown);
    m
});

impl Metrics {
    /// `twinport_gateway_vrrp_state`: 1 for `v`, 0 for the others.
    pub fn set_vrrp(&self, v: crate::pair::Vrrp) {
        for s in crate::pair::Vrrp::ALL {
            self.vrrp_state
                .with_label_values(&[s.as_str()])
                .set(i64::from(s == v));
        }
    }
}

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The `code_class` label of a status: `1xx` .. `5xx`.
pub const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn code_class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Renders the default registry as Prometheus text.
pub fn render() -> Vec<u8> {
    let mut buf = Vec::with_capacity(16 * 1024);
    // Encoding the default registry into a Vec cannot fail.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    buf
}

/// The metrics listener's app: `GET /healthz` (the gateway's own health,
/// see [`crate::selfcheck`]: 200 or 503 with JSON), anything else the
/// metrics.
pub struct MetricsApp {
    pub health: std::sync::Arc<crate::selfcheck::SelfHealth>,
}

/// `/healthz`'s answer: 200 when healthy, else 503; JSON either way.
pub fn healthz(health: &crate::selfcheck::SelfHealth) -> (u16, Vec<u8>) {
    let v = health.verdict();
    let code = if v.healthy { 200 } else { 503 };
    (code, serde_json::to_vec(&v).unwrap_or_default())
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        if session.req_header().uri.path() == "/healthz" {
            let (code, body) = healthz(&self.health);
            return http::Response::builder()
                .status(code)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::CONTENT_LENGTH, body.len())
                .header(http::header::CACHE_CONTROL, "no-store")
                .body(body)
                .expect("static response parts are valid");
        }
        let body = render();
        http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, TextEncoder::new().format_type())
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .expect("static response parts are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(CODE_CLASSES[code_class_index(204)], "2xx");
        assert_eq!(CODE_CLASSES[code_class_index(503)], "5xx");
        assert_eq!(CODE_CLASSES[code_class_index(101)], "1xx");
        assert_eq!(CODE_CLASSES[code_class_index(0)], "5xx");
    }

    #[test]
    fn every_design_metric_is_exported() {
        let m = metrics();
        m.config_generation.set(1);
        m.requests.with_label_values(&["a", "2xx"]).inc();
        m.request_duration.with_label_values(&["a"]).observe(0.01);
        m.node_up.with_label_values(&["a"]).set(1);
        m.node_role.with_label_values(&["a", "primary"]).set(1);
        m.node_state.with_label_values(&["a", "ready"]).set(1);
        m.inflight.with_label_values(&["a"]).set(0);
        m.failovers.with_label_values(&["passive"]).inc();
        m.retries.with_label_values(&["connect_refused"]).inc();
        m.health_checks.with_label_values(&["a", "ok"]).inc();
        m.config_reloads.with_label_values(&["ok"]).inc();
        let text = String::from_utf8(render()).unwrap();
        for name in [
            "twinport_requests_total",
            "twinport_request_duration_seconds_bucket",
            "twinport_node_up",
            "twinport_node_role",
            "twinport_node_state",
            "twinport_inflight_requests",
            "twinport_failovers_total",
            "twinport_retries_total",
            "twinport_health_checks_total",
            "twinport_config_reloads_total",
            "twinport_config_generation",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
