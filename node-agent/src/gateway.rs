//! What the agent asks the gateway: is anything still sent to this node?
//! One `GET /v1/status` on the gateway's admin API (docs/operator-contract.md).

use crate::config::GatewayLink;

/// The gateway's view of this node's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Whether the gateway may send requests to the node: new ones, or,
    /// during a soft drain, those of sessions bound to it.
    pub routed: bool,
    /// Requests the gateway has in flight on the node.
    pub inflight: i64,
}

/// Reads the node's traffic from every gateway of the link, with `token`
/// (the link's, as last read from its file): routed if any gateway routes
/// to it, the requests in flight summed. A gateway that refuses the
/// connection is not running and sends the node nothing; any other error
/// leaves the answer unknown.
pub async fn node_traffic(link: &GatewayLink, token: &[u8], node: &str) -> Result<Traffic, String> {
    let mut total = Traffic {
        routed: false,
        inflight: 0,
    };
    let mut answered = 0;
    let mut down = Vec::new();
    for admin in &link.admins {
        match one_gateway(link, admin, token, node).await {
            Ok(t) => {
                answered += 1;
                total.routed |= t.routed;
                total.inflight += t.inflight;
            }
            Err(Failed::NotRunning(why)) => down.push(why),
            Err(Failed::Other(why)) => return Err(why),
        }
    }
    if answered == 0 {
        return Err(format!("no gateway answers: {}", down.join("; ")));
    }
    Ok(total)
}

enum Failed {
    /// The connection was refused: no gateway runs there.
    NotRunning(String),
    Other(String),
}

async fn one_gateway(
    link: &GatewayLink,
    admin: &reqwest::Url,
    token: &[u8],
    node: &str,
) -> Result<Traffic, Failed> {
    let url = admin
        .join("/v1/status")
        .map_err(|e| Failed::Other(e.to_string()))?;
    let resp = link
        .client
        .get(url.clone())
        .bearer_auth(String::from_utf8_lossy(token))
        .send()
        .await
        .map_err(|e| {
            let why = format!("gateway {url}: {e}");
            if refused(&e) {
                Failed::NotRunning(why)
            } else {
                Failed::Other(why)
            }
        })?;
    if !resp.status().is_success() {
        return Err(Failed::Other(format!(
            "gateway {url}: status {}",
            resp.status()
        )));
    }
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| Failed::Other(format!("gateway {url}: {e}")))?;
    traffic_of(&v, node).map_err(Failed::Other)
}

/// The connection was refused (somewhere in the error's causes).
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cur = err.source();
    }
    false
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
