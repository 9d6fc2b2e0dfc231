//! The addresses a test may use, and a guard that refuses every other one.
//!
//! This machine's real network uses other ranges; a typo in a test must fail loudly
//! instead of sending anything there, so every address a server binds or a probe names
//! goes through [`check_ip`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};

/// The bottle side's address on the veth (it plays "the host").
pub const BOTTLE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The bottle side's IPv6 address on the veth.
pub const BOTTLE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The internet side's base address on the veth.
pub const INTERNET_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The internet side's base IPv6 address on the veth.
pub const INTERNET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// `198.51.100.<last>`.
pub fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, last)
}

/// `2001:db8::<last>` (hex, as written: `v6(0x10)` is `2001:db8::10`).
pub fn v6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)
}

/// Whether a test may use this address: TEST-NET-2, the IPv6 documentation prefix,
/// loopback, unspecified, or an IPv4-mapped form of one of those.
pub fn is_test_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (o[0], o[1], o[2]) == (198, 51, 100) || a.is_loopback() || a.is_unspecified()
        }
        IpAddr::V6(a) => {
            if let Some(m) = a.to_ipv4_mapped() {
                return is_test_ip(IpAddr::V4(m));
            }
            let s = a.segments();
            (s[0], s[1]) == (0x2001, 0x0db8) || a.is_loopback() || a.is_unspecified()
        }
    }
}

/// Refuses an address outside the test ranges.
pub fn check_ip(ip: IpAddr) -> Result<IpAddr> {
    if !is_test_ip(ip) {
        bail!("address {ip} is outside the test ranges (198.51.100.0/24, 2001:db8::/32, loopback)");
    }
    Ok(ip)
}

/// Parses and checks an address written by a test.
pub fn parse_test_ip(text: &str) -> Result<IpAddr> {
    let ip: IpAddr = text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|e| anyhow::anyhow!("parse address {text:?}: {e}"))?;
    check_ip(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_ranges_pass() {
        for ok in [
            "198.51.100.7",
            "2001:db8::66",
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:198.51.100.10",
            "::ffff:127.0.0.1",
        ] {
            assert!(parse_test_ip(ok).is_ok(), "{ok}");
        }
        for bad in [
            "192.0.2.1",
            "203.0.113.9",
            "8.8.8.8",
            "2001:4860::1",
            "::ffff:192.0.2.1",
            "fe80::1",
        ] {
            assert!(parse_test_ip(bad).is_err(), "{bad}");
        }
    }
}
