//! What the agent asks the gateway: is anything still sent to this node?
//! One `GET /v1/status` on the gateway's admin API (docs/operator-contract.md).

use crate::config::GatewayLink;
use std::time::Duration;

/// The gateway's view of this node's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Whether the gateway may send requests to the node: new ones, or,
    /// during a soft drain, those of sessions bound to it.
    pub routed: bool,
    /// Requests the gateway has in flight on the node.
    pub inflight: i64,
}

/// Reads the node's traffic from the gateway's status, with `token` (the
/// link's, as last read from its file).
pub async fn node_traffic(link: &GatewayLink, token: &[u8], node: &str) -> Result<Traffic, String> {
    let url = link.admin.join("/v1/status").map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(url.clone())
        .bearer_auth(String::from_utf8_lossy(token))
        .send()
        .await
        .map_err(|e| format!("gateway {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("gateway {url}: status {}", resp.status()));
    }
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| format!("gateway {url}: {e}"))?;
    traffic_of(&v, node)
}

/// The node's traffic in a gateway status document.
pub fn traffic_of(status: &serde_json::Value, node: &str) -> Result<Traffic, String> {
    let n = status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == node)
        .ok_or_else(|| format!("the gateway has no node `{node}`"))?;
    Ok(Traffic {
        routed: n["eligible"].as_bool().unwrap_or(true) || !n["soft_drain"].is_null(),
        inflight: n["inflight"].as_i64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_node_is_found_by_name() {
        let s = json!({"nodes": [
            {"name": "a", "eligible": true, "inflight": 3},
            {"name": "b", "eligible": false, "inflight": 0}
        ]});
        assert_eq!(
            traffic_of(&s, "a").unwrap(),
            Traffic {
                routed: true,
                inflight: 3
            }
        );
        assert_eq!(
            traffic_of(&s, "b").unwrap(),
            Traffic {
                routed: false,
                inflight: 0
            }
        );
        assert!(traffic_of(&s, "c").unwrap_err().contains("no node `c`"));
        // A soft drain still sends the node its sessions' requests.
        let soft = json!({"nodes": [{"name": "a", "eligible": false, "inflight": 0,
            "soft_drain": {"by": "agent", "until": "2026-12-04T12:00:00Z"}}]});
        assert!(traffic_of(&soft, "a").unwrap().routed);
    }
}
