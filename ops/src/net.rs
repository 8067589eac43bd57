//! Addresses: whether a peer is one of the trusted proxies whose
//! forwarding headers name the client (the gateway's
//! `clients.trusted_proxies`, ticketing's `trusted_proxies`).

use ipnet::IpNet;
use std::net::IpAddr;

/// Whether `ip` is inside one of `proxies`. An IPv4 peer that arrives as
/// an IPv4-mapped IPv6 address (`::ffff:192.0.2.5`, as a dual-stack socket
/// shows it) counts as the IPv4 address it is.
pub fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    proxies.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn a_peer_is_trusted_inside_a_listed_network_mapped_or_not() {
        let proxies = nets(&["10.0.0.0/8", "192.0.2.5/32", "2001:db8::/32"]);
        for ip in [
            "10.1.2.3",
            "192.0.2.5",
            "::ffff:192.0.2.5",
            "::ffff:10.9.9.9",
            "2001:db8::7",
        ] {
            assert!(trusted(ip.parse().unwrap(), &proxies), "{ip}");
        }
        for ip in [
            "192.0.2.6",
            "::ffff:192.0.2.6",
            "127.0.0.1",
            "2001:db9::1",
            "::1",
        ] {
            assert!(!trusted(ip.parse().unwrap(), &proxies), "{ip}");
        }
        assert!(!trusted("10.0.0.1".parse().unwrap(), &[]));
    }
}
