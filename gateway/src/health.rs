//! Active readiness checks: `GET /ready` on each node-agent.
//!
//! The protocol is the operator contract's (`docs/operator-contract.md`):
//! `200` with `state: ready` (and a weight in percent) makes the node
//! eligible; `503` with `state: draining` keeps it
//! alive but takes it out of rotation; any other answer, a timeout or a
//! refused connection is a failed check. Each check uses a new connection,
//! like HAProxy's, so a node whose process hangs while the kernel still
//! accepts connections is caught by the timeout.
//!
//! [`interpret`] is the pure part (status + body → outcome); [`Checker`]
//! does the IO with pingora's own HTTP client.

use crate::config::HealthCheck;
use crate::failover::Observation;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Result of one check, ready for the state machine and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub observation: Observation,
    /// `result` label of `twinport_health_checks_total`.
    pub result: &'static str,
    /// State the agent reported, if it answered with one.
    pub agent_state: Option<String>,
    pub version: Option<String>,
}

/// The agent's answer body (docs/operator-contract.md); every field optional so that a
/// plain application health endpoint answering 200 also works.
#[derive(Debug, Default, Deserialize)]
struct Readiness {
    node: Option<String>,
    state: Option<String>,
    weight: Option<u32>,
    version: Option<String>,
    reason: Option<String>,
}

/// Largest weight an agent may report (percent of the configured weight).
const MAX_WEIGHT_PERCENT: u32 = 1000;

/// Turns an agent's answer into an outcome. `expected` is the node name
/// the gateway has for this agent: an agent that names another node is a
/// wiring mistake and is treated as a failed check.
pub fn interpret(status: u16, body: &[u8], expected: &str) -> CheckOutcome {
    let parsed: Option<Readiness> = serde_json::from_slice(body).ok();
    let r = parsed.unwrap_or_default();
    let failed = |reason: String, state: Option<String>| CheckOutcome {
        observation: Observation::CheckFailed { reason },
        result: "failed",
        agent_state: state,
        version: None,
    };
    if let Some(node) = r.node.as_deref() {
        if node != expected {
            return failed(
                format!("agent reports node `{node}`, expected `{expected}`"),
                None,
            );
        }
    }
    let state = r.state.clone();
    match (status, state.as_deref()) {
        (200, None | Some("ready")) => CheckOutcome {
            observation: Observation::CheckPassed {
                weight_percent: r.weight.unwrap_or(100).min(MAX_WEIGHT_PERCENT),
            },
            result: "ok",
            agent_state: Some("ready".into()),
            version: r.version,
        },
        (503, Some("draining")) => CheckOutcome {
            observation: Observation::CheckDraining,
            result: "draining",
            agent_state: state,
            version: r.version,
        },
        (code, Some(s)) => {
            let why = r.reason.map(|x| format!(": {x}")).unwrap_or_default();
            failed(
                format!("status {code}, state {s}{why}"),
                Some(s.to_string()),
            )
        }
        (code, None) => failed(format!("status {code}"), None),
    }
}

/// Performs checks with pingora's HTTP client.
pub struct Checker {
    connector: Connector,
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

impl Checker {
    pub fn new() -> Self {
        Checker {
            connector: Connector::new(None),
        }
    }

    /// One check of the node called `name` through its agent at `agent`
    /// (`None`: its host name is not resolved), bounded by `hc.timeout`.
    pub async fn check(
        &self,
        name: &str,
        agent: Option<SocketAddr>,
        hc: &HealthCheck,
    ) -> CheckOutcome {
        let Some(agent) = agent else {
            return CheckOutcome {
                observation: Observation::CheckFailed {
                    reason: "the agent's host name is not resolved".into(),
                },
                result: "error",
                agent_state: None,
                version: None,
            };
        };
        let fut = self.exchange(agent, hc);
        match tokio::time::timeout(hc.timeout, fut).await {
            Ok(Ok((status, body))) => interpret(status, &body, name),
            Ok(Err(e)) => CheckOutcome {
                observation: Observation::CheckFailed {
                    reason: describe(e.etype()),
                },
                result: "error",
                agent_state: None,
                version: None,
            },
            Err(_) => CheckOutcome {
                observation: Observation::CheckFailed {
                    reason: format!(
                        "no answer within {}",
                        humantime::format_duration(hc.timeout)
                    ),
                },
                result: "timeout",
                agent_state: None,
                version: None,
            },
        }
    }

    async fn exchange(
        &self,
        agent: SocketAddr,
        hc: &HealthCheck,
    ) -> pingora::Result<(u16, Vec<u8>)> {
        let mut peer = HttpPeer::new(agent, false, String::new());
        peer.options.connection_timeout = Some(hc.timeout);
        peer.options.read_timeout = Some(hc.timeout);
        peer.options.write_timeout = Some(hc.timeout);
        let (mut session, _) = self.connector.get_http_session(&peer).await?;
        let mut req = RequestHeader::build("GET", hc.path.as_bytes(), None)?;
        req.insert_header("Host", agent.to_string())?;
        req.insert_header("User-Agent", "twinport-gateway")?;
        req.insert_header("Connection", "close")?;
        session.write_request_header(Box::new(req)).await?;
        session.finish_request_body().await?;
        session.read_response_header().await?;
        let status = session
            .response_header()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let mut body = Vec::new();
        while let Some(chunk) = session.read_response_body().await? {
            // A readiness answer is small; do not buffer a runaway body.
            if body.len() + chunk.len() > 16 * 1024 {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

fn describe(e: &pingora::ErrorType) -> String {
    use pingora::ErrorType::*;
    match e {
        ConnectRefused => "connection refused".into(),
        ConnectTimedout => "connect timeout".into(),
        ConnectNoRoute => "no route to host".into(),
        ReadTimedout => "read timeout".into(),
        ConnectionClosed => "connection closed".into(),
        ReadError => "read error".into(),
        WriteError => "write error".into(),
        other => other.as_str().to_string(),
    }
}

/// The longest a node that stops answering (hung, or its packets
/// dropped) can still count as up: the fault may land just after a check
/// passed; the next check starts up to one `interval` later, and the
/// `fall` failing checks that take it down each last at most
/// max(`timeout`, `interval`) — checks start every interval, or right
/// after the previous one when it took longer. With the defaults (250 ms,
/// 250 ms, fall 2): 750 ms. The chaos suite holds the gateway to this.
pub fn detection_bound(interval: Duration, timeout: Duration, fall: u32) -> Duration {
    interval + interval.max(timeout) * fall
}

/// The pause before the next check: checks start every `interval`, or
/// right after the previous one if it took longer.
pub fn next_check_in(interval: Duration, elapsed: Duration) -> Duration {
    interval.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detection_bound_follows_the_health_check() {
        let ms = Duration::from_millis;
        assert_eq!(detection_bound(ms(250), ms(250), 2), ms(750));
        // A timeout longer than the interval spaces the checks out.
        assert_eq!(detection_bound(ms(250), ms(1000), 2), ms(2250));
        assert_eq!(detection_bound(ms(1000), ms(250), 3), ms(4000));
    }

    #[test]
    fn ready_with_weight() {
        let o = interpret(
            200,
            br#"{"node":"a","state":"ready","weight":50,"version":"1.2.3"}"#,
            "a",
        );
        assert_eq!(
            o.observation,
            Observation::CheckPassed { weight_percent: 50 }
        );
        assert_eq!(o.result, "ok");
        assert_eq!(o.version.as_deref(), Some("1.2.3"));
    }

    #[test]
    fn plain_200_without_a_body_is_ready_at_full_weight() {
        let o = interpret(200, b"OK", "a");
        assert_eq!(
            o.observation,
            Observation::CheckPassed {
                weight_percent: 100
            }
        );
    }

    #[test]
    fn draining_is_alive_but_out_of_rotation() {
        let o = interpret(503, br#"{"node":"a","state":"draining"}"#, "a");
        assert_eq!(o.observation, Observation::CheckDraining);
        assert_eq!(o.agent_state.as_deref(), Some("draining"));
    }

    #[test]
    fn other_states_and_codes_fail_with_a_reason() {
        let o = interpret(
            503,
            br#"{"node":"a","state":"upgrading","reason":"release 1.3"}"#,
            "a",
        );
        match o.observation {
            Observation::CheckFailed { reason } => {
                assert_eq!(reason, "status 503, state upgrading: release 1.3")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o.agent_state.as_deref(), Some("upgrading"));
        assert!(matches!(
            interpret(500, b"", "a").observation,
            Observation::CheckFailed { .. }
        ));
        // 200 with a state other than ready is not ready.
        assert!(matches!(
            interpret(200, br#"{"state":"starting"}"#, "a").observation,
            Observation::CheckFailed { .. }
        ));
    }

    #[test]
    fn an_agent_of_another_node_fails_the_check() {
        let o = interpret(200, br#"{"node":"b","state":"ready"}"#, "a");
        assert!(
            matches!(o.observation, Observation::CheckFailed { ref reason } if reason.contains("`b`"))
        );
    }

    #[test]
    fn absurd_weights_are_capped() {
        let o = interpret(200, br#"{"state":"ready","weight":4000000000}"#, "a");
        assert_eq!(
            o.observation,
            Observation::CheckPassed {
                weight_percent: 1000
            }
        );
    }
}
