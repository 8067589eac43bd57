//! What the gateway does about its clients: who the client is when
//! proxies stand in front of the gateway, which forwarding headers the
//! nodes get, and how fast one address may go. Hop-by-hop headers (the
//! standard ones and those a client names in `Connection`) never reach a
//! node: pingora's standard upstream request policy, pinned on every
//! node's peer (`node.rs`), removes them before our hooks run.
//!
//! Forwarding headers are trusted only from `clients.trusted_proxies`:
//! from any other peer an incoming `X-Forwarded-For`, `Forwarded`,
//! `X-Real-IP` or `X-Forwarded-Proto` is a client's claim and is replaced,
//! so a node can believe what it reads. From a trusted proxy the chain is
//! kept and the proxy's address appended; the client is then the
//! right-most address in `X-Forwarded-For` that is not a trusted proxy
//! (the left-most ones could be forged by the client itself).

use ipnet::IpNet;
use pingora::http::RequestHeader;
use std::net::IpAddr;
use std::time::Duration;
use twinport_ops::net::trusted;

/// Every `X-Forwarded-For` line of `req`, joined (a list may span lines).
fn forwarded_for(req: &RequestHeader) -> String {
    req.headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The client's address: the peer, unless the peer is a trusted proxy;
/// then the right-most `X-Forwarded-For` entry that is not one.
pub fn client_ip(peer: IpAddr, req: &RequestHeader, proxies: &[IpNet]) -> IpAddr {
    if !trusted(peer, proxies) {
        return peer;
    }
    let chain = forwarded_for(req);
    let mut last = peer;
    for hop in chain.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // A malformed entry: nothing left of it can be believed.
            return last;
        };
        last = ip;
        if !trusted(ip, proxies) {
            return ip;
        }
    }
    last
}

/// Forwarding headers a client that is not a trusted proxy may not set
/// for the node (besides `X-Forwarded-For`, `Forwarded` and `X-Real-IP`,
/// which are always replaced).
const CLIENT_FORWARDING: [&str; 3] = ["x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"];

/// Rewrites the request for the node (pingora has removed the hop-by-hop
/// headers already): forwarding headers a client may not set removed,
/// forwarding headers set from `peer` (kept and extended only if `peer`
/// is a trusted proxy), `X-Real-IP` the client.
///
/// This runs for every proxied request, so it looks at the request's
/// header names once and removes only what is there (a removal is two
/// hash lookups, one in pingora's case map), and formats the peer's
/// address once.
pub fn prepare_upstream_request(
    req: &mut RequestHeader,
    peer: IpAddr,
    https: bool,
    proxies: &[IpNet],
) {
    let from_proxy = trusted(peer, proxies);
    if !from_proxy {
        let mut claimed: Vec<http::HeaderName> = Vec::new();
        for name in req.headers.keys() {
            if CLIENT_FORWARDING.contains(&name.as_str()) {
                claimed.push(name.clone());
            }
        }
        for h in claimed {
            req.remove_header(&h);
        }
    }

    let client = client_ip(peer, req, proxies);
    let proto = if https { "https" } else { "http" };
    let peer_text = peer.to_string();
    let mut hop = String::with_capacity(64);
    hop.push_str("for=");
    match peer {
        IpAddr::V4(_) => hop.push_str(&peer_text),
        IpAddr::V6(_) => {
            hop.push_str("\"[");
            hop.push_str(&peer_text);
            hop.push_str("]\"");
        }
    }
    hop.push_str(";proto=");
    hop.push_str(proto);
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.host());
    if let Some(h) = host.filter(|h| !h.contains(['"', ';', ','])) {
        hop.push_str(";host=\"");
        hop.push_str(h);
        hop.push('"');
    }
    let (xff, forwarded) = if from_proxy {
        let chain = forwarded_for(req);
        let old_fwd = req
            .headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let join = |old: String, new: String| {
            if old.trim().is_empty() {
                new
            } else {
                format!("{old}, {new}")
            }
        };
        (join(chain, peer_text.clone()), join(old_fwd, hop))
    } else {
        (peer_text.clone(), hop)
    };
    let real_ip = if client == peer {
        peer_text
    } else {
        client.to_string()
    };
    // The values are addresses, a scheme and a checked host: valid.
    let _ = req.insert_header("X-Forwarded-For", xff);
    let _ = req.insert_header("Forwarded", forwarded);
    let _ = req.insert_header("X-Real-IP", real_ip);
    // A trusted proxy's X-Forwarded-Proto stays; anyone else's was removed.
    if !from_proxy || !req.headers.contains_key("x-forwarded-proto") {
        let _ = req.insert_header("X-Forwarded-Proto", proto);
    }
}

/// Requests per second per client address, over a one-second window
/// (pingora-limits' estimator: a few counters, no per-client state kept
/// beyond two windows).
pub struct RateLimiter {
    rate: pingora_limits::rate::Rate,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            rate: pingora_limits::rate::Rate::new(Duration::from_secs(1)),
        }
    }
}

impl RateLimiter {
    /// Counts one request of `client`; false when it is over `limit` per
    /// second (0: no limit, nothing counted).
    pub fn allow(&self, client: IpAddr, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        self.rate.observe(&client, 1) <= limit as isize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn get(r: &RequestHeader, h: &str) -> String {
        r.headers
            .get(h)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn a_client_cannot_claim_another_address() {
        let mut r = req(&[
            ("host", "portal.example"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        let peer: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(client_ip(peer, &r, &[]), peer);
        prepare_upstream_request(&mut r, peer, false, &[]);
        assert_eq!(get(&r, "x-forwarded-for"), "203.0.113.7");
        assert_eq!(
            get(&r, "forwarded"),
            "for=203.0.113.7;proto=http;host=\"portal.example\""
        );
        assert_eq!(get(&r, "x-real-ip"), "203.0.113.7");
        assert_eq!(get(&r, "x-forwarded-proto"), "http");
    }

    #[test]
    fn a_trusted_proxy_chain_is_kept_and_the_client_found_in_it() {
        let proxies = nets(&["10.0.0.0/8"]);
        let mut r = req(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.9"),
            ("x-forwarded-for", "10.1.2.3"),
            ("forwarded", "for=198.51.100.9"),
        ]);
        let peer: IpAddr = "10.9.9.9".parse().unwrap();
        // 6.6.6.6 was written by the client itself: the first untrusted
        // address from the right is the client.
        assert_eq!(
            client_ip(peer, &r, &proxies),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        prepare_upstream_request(&mut r, peer, true, &proxies);
        assert_eq!(
            get(&r, "x-forwarded-for"),
            "6.6.6.6, 198.51.100.9, 10.1.2.3, 10.9.9.9"
        );
        assert_eq!(
            get(&r, "forwarded"),
            "for=198.51.100.9, for=10.9.9.9;proto=https"
        );
        assert_eq!(get(&r, "x-real-ip"), "198.51.100.9");
    }

    #[test]
    fn ipv6_and_mapped_peers() {
        let proxies = nets(&["192.0.2.0/24"]);
        let mapped: IpAddr = "::ffff:192.0.2.5".parse().unwrap();
        let r = req(&[("x-forwarded-for", "2001:db8::1")]);
        assert_eq!(
            client_ip(mapped, &r, &proxies),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let mut r = req(&[]);
        prepare_upstream_request(&mut r, "2001:db8::2".parse().unwrap(), true, &[]);
        assert_eq!(get(&r, "forwarded"), "for=\"[2001:db8::2]\";proto=https");
    }

    #[test]
    fn garbage_in_the_chain_stops_the_search() {
        let proxies = nets(&["10.0.0.0/8"]);
        let r = req(&[("x-forwarded-for", "1.1.1.1, not-an-ip, 10.0.0.2")]);
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &r, &proxies),
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_proto_from_a_trusted_proxy_only() {
        let proxies = nets(&["10.0.0.0/8"]);
        let claimed = [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "444"),
        ];
        let mut r = req(&claimed);
        prepare_upstream_request(&mut r, "192.0.2.1".parse().unwrap(), false, &proxies);
        assert_eq!(get(&r, "x-forwarded-proto"), "http");
        assert!(r.headers.get("x-forwarded-host").is_none());
        assert!(r.headers.get("x-forwarded-port").is_none());
        let mut r = req(&claimed);
        prepare_upstream_request(&mut r, "10.0.0.1".parse().unwrap(), false, &proxies);
        assert_eq!(get(&r, "x-forwarded-proto"), "https");
        assert_eq!(get(&r, "x-forwarded-host"), "evil.example");
    }

    #[test]
    fn the_rate_limit_counts_per_address() {
        let l = RateLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let allowed = (0..10).filter(|_| l.allow(a, 5)).count();
        assert_eq!(allowed, 5);
        assert!(l.allow(b, 5), "another address is not affected");
        assert!((0..100).all(|_| l.allow(a, 0)), "0 is no limit");
    }
}
