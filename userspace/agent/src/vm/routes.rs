//! The host's routes, read from `/proc/net/route` and `/proc/net/ipv6_route` (the same
//! tables `ip route` shows, without a netlink dependency), and the check that a VM pool
//! collides with none of them but a default route: a pool the host already routes would
//! make guest traffic and host traffic indistinguishable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cork_policy::Prefix;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("reading {path}")]
    Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// One route of the host: its destination prefix and device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub dst: Prefix,
    pub dev: String,
}

/// Routes of `/proc/net/route` (hex, little-endian IPv4 words; destination, mask).
pub fn parse_route4(text: &str) -> Vec<HostRoute> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let (dev, dst, mask) = (f.first()?, f.get(1)?, f.get(7)?);
            let dst = Ipv4Addr::from(u32::from_str_radix(dst, 16).ok()?.swap_bytes());
            let len = u32::from_str_radix(mask, 16).ok()?.count_ones() as u8;
            Some(HostRoute {
                dst: Prefix::new(IpAddr::V4(dst), len).ok()?,
                dev: (*dev).to_owned(),
            })
        })
        .collect()
}

/// Routes of `/proc/net/ipv6_route` (hex destination, hex prefix length, ..., device).
pub fn parse_route6(text: &str) -> Vec<HostRoute> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[0].len() != 32 {
                return None;
            }
            let dst = u128::from_str_radix(f.first()?, 16).ok()?;
            let len = u8::from_str_radix(f.get(1)?, 16).ok()?;
            Some(HostRoute {
                dst: Prefix::new(IpAddr::V6(Ipv6Addr::from(dst)), len).ok()?,
                dev: (*f.last()?).to_owned(),
            })
        })
        .collect()
}

/// Does either prefix contain the other?
fn overlaps(a: &Prefix, b: &Prefix) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains_prefix(b) || b.contains_prefix(a))
}

/// The host's routes (default routes excluded) that overlap `pool`.
pub fn overlapping_routes(pool: &Prefix) -> Result<Vec<HostRoute>, RouteError> {
    let read = |path: &'static str| {
        std::fs::read_to_string(path).map_err(|source| RouteError::Read { path, source })
    };
    let routes = if pool.is_ipv4() {
        parse_route4(&read("/proc/net/route")?)
    } else {
        // Hosts without IPv6 have no such file: no IPv6 routes to collide with.
        match read("/proc/net/ipv6_route") {
            Ok(text) => parse_route6(&text),
            Err(RouteError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        }
    };
    Ok(routes
        .into_iter()
        .filter(|r| r.dst.len() > 0 && overlaps(&r.dst, pool))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE4: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";
    const ROUTE6: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
";

    #[test]
    fn proc_routes_parse() {
        let r4 = parse_route4(ROUTE4);
        assert_eq!(r4.len(), 2);
        assert_eq!(r4[1].dst.to_string(), "192.0.2.0/24");
        assert_eq!(r4[0].dst.len(), 0);
        let r6 = parse_route6(ROUTE6);
        assert_eq!(r6[0].dst.to_string(), "fd00::/64");
        assert_eq!(r6[0].dev, "eth0");
        assert_eq!(r6[1].dst.len(), 0);
    }

    #[test]
    fn overlap_is_containment_either_way_within_a_family() {
        let p = |s: &str| s.parse::<Prefix>().expect("prefix");
        assert!(overlaps(&p("192.0.2.0/24"), &p("192.0.2.128/26")));
        assert!(overlaps(&p("192.0.2.128/26"), &p("192.0.0.0/16")));
        assert!(!overlaps(&p("192.0.2.0/24"), &p("198.51.100.0/24")));
        assert!(!overlaps(&p("fd00::/64"), &p("fd63:6f72:6b00::/48")));
        assert!(overlaps(&p("fd00::/8"), &p("fd63:6f72:6b00::/48")));
    }

    #[test]
    fn truncated_lines_are_skipped_not_misread() {
        assert!(parse_route4("hdr\neth0\t000200C0").is_empty());
        assert!(parse_route6("fd00 40").is_empty());
    }
}
