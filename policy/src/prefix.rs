//! IP prefixes as the manifest writes them and the kernel's LPM tries store them.
//!
//! A [`Prefix`] is always canonical: no host bits set, and IPv4-mapped IPv6 prefixes
//! (`::ffff:a.b.c.d/96+n`) are stored as the IPv4 prefix `a.b.c.d/n` they denote, because
//! the kernel programs normalise IPv4-mapped destinations to IPv4 before the lookup.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A canonical IPv4 or IPv6 prefix. `Ord` sorts IPv4 before IPv6, then by address, then
/// by length, which is the order of [`crate::KernelPlan`] entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why text is not a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{text:?} is not an IPv4 or IPv6 address or prefix")]
    BadAddress { text: String },
    #[error("{text:?} has a bad prefix length; use 0-{max} after the `/`")]
    BadLength { text: String, max: u8 },
    #[error("{text:?} has host bits set; write {canonical:?}")]
    HostBits { text: String, canonical: String },
}

impl Prefix {
    /// Builds a prefix, refusing host bits below `len`. IPv4-mapped IPv6 prefixes of
    /// length 96 or more become the IPv4 prefix they denote.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = max_len(addr);
        let text = || format!("{addr}/{len}");
        if len > max {
            return Err(PrefixError::BadLength { text: text(), max });
        }
        let masked = mask(addr, len);
        if masked != addr {
            return Err(PrefixError::HostBits {
                text: text(),
                canonical: format!("{masked}/{len}"),
            });
        }
        Ok(normalise(Self { addr, len }))
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    #[expect(
        clippy::len_without_is_empty,
        reason = "a prefix length, not a collection size"
    )]
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this prefix is IPv4 (mapped prefixes count as IPv4).
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `addr` lies inside this prefix. IPv4-mapped IPv6 addresses are treated as
    /// the IPv4 address they carry, like the kernel does.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = normalise_addr(addr);
        addr.is_ipv4() == self.addr.is_ipv4() && mask(addr, self.len) == self.addr
    }

    /// Whether every address of `other` lies inside this prefix.
    pub fn contains_prefix(&self, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(other.addr)
    }

    /// This prefix cut to `len` bits: the prefix of that length containing it (`None`
    /// when `len` is longer than this one). Prefixes of the other family never contain it,
    /// and a stored IPv6 prefix is never a mapped one, so cutting it never makes one.
    pub(crate) fn cut(&self, len: u8) -> Option<Prefix> {
        (len <= self.len).then(|| Prefix {
            addr: mask(self.addr, len),
            len,
        })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Parses `addr/len`, or a bare address as a host prefix (`/32` or `/128`).
impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad_address = || PrefixError::BadAddress {
            text: text.to_owned(),
        };
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| bad_address())?;
        let max = max_len(addr);
        let len = match len_text {
            None => max,
            // Digits only: `u8::from_str` would also take `+24`.
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => {
                l.parse().map_err(|_| PrefixError::BadLength {
                    text: text.to_owned(),
                    max,
                })?
            }
            Some(_) => {
                return Err(PrefixError::BadLength {
                    text: text.to_owned(),
                    max,
                });
            }
        };
        Self::new(addr, len).map_err(|e| match e {
            // Report the author's own spelling, not our re-rendering of it.
            PrefixError::BadLength { max, .. } => PrefixError::BadLength {
                text: text.to_owned(),
                max,
            },
            PrefixError::HostBits { canonical, .. } => PrefixError::HostBits {
                text: text.to_owned(),
                canonical,
            },
            other => other,
        })
    }
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// `addr` with every bit past `len` cleared.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// The IPv4 address an IPv4-mapped IPv6 address carries; other addresses unchanged.
pub(crate) fn normalise_addr(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// A canonical mapped prefix always has `len >= 96`: its address has the `ffff` in bits
/// 80..96, which a shorter length would make host bits.
fn normalise(p: Prefix) -> Prefix {
    match (normalise_addr(p.addr), p.addr) {
        (IpAddr::V4(v4), IpAddr::V6(_)) => Prefix {
            addr: IpAddr::V4(v4),
            len: p.len - 96,
        },
        _ => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Prefix, String> {
        s.parse::<Prefix>().map_err(|e| e.to_string())
    }

    #[test]
    fn parses_and_displays_canonical_prefixes() {
        assert_eq!(p("198.51.100.0/24").unwrap().to_string(), "198.51.100.0/24");
        assert_eq!(p("198.51.100.7").unwrap().to_string(), "198.51.100.7/32");
        assert_eq!(p("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert_eq!(p("2001:db8::1").unwrap().to_string(), "2001:db8::1/128");
        assert_eq!(p("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(p("::/0").unwrap().to_string(), "::/0");
    }

    #[test]
    fn mapped_prefixes_become_ipv4() {
        assert_eq!(
            p("::ffff:198.51.100.0/120").unwrap().to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(p("::ffff:0:0/96").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(p("::ffff:1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        assert_eq!(
            p("::ffff:0:0/95").unwrap_err(),
            r#""::ffff:0:0/95" has host bits set; write "::fffe:0:0/95""#
        );
    }

    #[test]
    fn rejects_bad_prefixes() {
        assert_eq!(
            p("198.51.100.1/24").unwrap_err(),
            r#""198.51.100.1/24" has host bits set; write "198.51.100.0/24""#
        );
        assert_eq!(
            p("10.0.0.0/33").unwrap_err(),
            r#""10.0.0.0/33" has a bad prefix length; use 0-32 after the `/`"#
        );
        for bad_len in [
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/0008",
            "::/129",
            "::/x",
        ] {
            assert!(
                p(bad_len).unwrap_err().contains("bad prefix length"),
                "{bad_len}"
            );
        }
        for bad_addr in [
            "",
            "example.com",
            "10.0.0/8",
            "fe80::1%eth0",
            " 10.0.0.1",
            "[::1]",
        ] {
            assert!(
                p(bad_addr).unwrap_err().contains("not an IPv4"),
                "{bad_addr}"
            );
        }
    }

    #[test]
    fn cutting_gives_the_containing_prefixes() {
        let net = p("198.51.100.128/25").unwrap();
        assert_eq!(net.cut(24), Some(p("198.51.100.0/24").unwrap()));
        assert_eq!(net.cut(0), Some(p("0.0.0.0/0").unwrap()));
        assert_eq!(net.cut(25), Some(net));
        assert_eq!(net.cut(26), None);
        let v6 = p("2001:db8:1:2::/64").unwrap();
        assert_eq!(v6.cut(32), Some(p("2001:db8::/32").unwrap()));
        assert_eq!(v6.cut(0), Some(p("::/0").unwrap()));
        for len in 0..=64 {
            let cut = v6.cut(len).unwrap();
            assert!(cut.contains_prefix(&v6) && cut.len() == len, "{cut}");
        }
    }

    #[test]
    fn containment_respects_family_and_mapping() {
        let net = p("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.255.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.0".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(
            !p("::/0")
                .unwrap()
                .contains("::ffff:10.1.0.9".parse().unwrap())
        );
        assert!(p("0.0.0.0/0").unwrap().contains_prefix(&net));
        assert!(!net.contains_prefix(&p("10.0.0.0/8").unwrap()));
        assert!(!p("::/0").unwrap().contains_prefix(&net));
    }
}
