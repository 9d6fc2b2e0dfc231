//! Where the DNS proxy sends allowed queries: the manifest's `[dns] upstream`, else the
//! host's `/etc/resolv.conf` name servers (the agent is outside the bottle, so loopback
//! resolvers such as 127.0.0.53 work).

use std::net::{IpAddr, SocketAddr};

/// `nameserver` lines of a resolv.conf, port 53. Scoped IPv6 (`fe80::1%eth0`) and
/// malformed lines are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(addr, 53))
        })
        .collect()
}

/// The upstreams for a policy; empty when none are configured or found.
pub fn upstreams(policy: &cork_policy::Policy) -> Vec<SocketAddr> {
    match &policy.dns.upstream {
        Some(list) => list.clone(),
        None => std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| parse_resolv_conf(&t))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_in_order_and_junk_skipped() {
        let text = "# comment\nsearch corp.test\nnameserver 198.51.100.53\n\
                    nameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver\noptions edns0\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "198.51.100.53:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
    }
}
