//! Parsers for router solicitations (what the server reads) and router advertisements
//! (what tests and tools read back). ND messages carry no length of their own, so a
//! message cut exactly at an option boundary is a valid shorter message; a cut anywhere
//! else is an error. Unknown options are skipped, as RFC 4861 4.6 requires.

use std::net::Ipv6Addr;

use super::{NdpError, PrefixInfo, RouterAdvertisement, RouterSolicitation, TYPE_RA, TYPE_RS, opt};
use crate::mac::MacAddr;

const RS_HEADER: usize = 8;
const RA_HEADER: usize = 16;

/// Parses an ICMPv6 router solicitation.
pub fn parse_router_solicitation(icmp: &[u8]) -> Result<RouterSolicitation, NdpError> {
    header(icmp, TYPE_RS, "router solicitation", RS_HEADER)?;
    let mut rs = RouterSolicitation { source_mac: None };
    for (kind, offset, body) in options(icmp, RS_HEADER)? {
        if kind == opt::SOURCE_LL {
            rs.source_mac = Some(source_ll(offset, body)?);
        }
    }
    Ok(rs)
}

/// Parses an ICMPv6 router advertisement.
pub fn parse_router_advertisement(icmp: &[u8]) -> Result<RouterAdvertisement, NdpError> {
    header(icmp, TYPE_RA, "router advertisement", RA_HEADER)?;
    let be32 = |at: usize| u32::from_be_bytes([icmp[at], icmp[at + 1], icmp[at + 2], icmp[at + 3]]);
    let mut ra = RouterAdvertisement {
        cur_hop_limit: icmp[4],
        managed: icmp[5] & 0x80 != 0,
        other: icmp[5] & 0x40 != 0,
        router_lifetime_secs: u16::from_be_bytes([icmp[6], icmp[7]]),
        reachable_ms: be32(8),
        retrans_ms: be32(12),
        source_mac: None,
        mtu: None,
        prefixes: Vec::new(),
        rdnss: None,
    };
    for (kind, offset, body) in options(icmp, RA_HEADER)? {
        let bad = |name, expected| NdpError::OptionLength {
            kind,
            name,
            offset,
            len: body.len() + 2,
            expected,
        };
        let word =
            |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        match kind {
            opt::SOURCE_LL => ra.source_mac = Some(source_ll(offset, body)?),
            opt::MTU if body.len() == 6 => ra.mtu = Some(word(2)),
            opt::MTU => return Err(bad("MTU", "8")),
            opt::PREFIX_INFO if body.len() == 30 => ra.prefixes.push(PrefixInfo {
                len: body[0],
                on_link: body[1] & 0x80 != 0,
                autonomous: body[1] & 0x40 != 0,
                valid_secs: word(2),
                preferred_secs: word(6),
                prefix: ipv6(&body[14..30]),
            }),
            opt::PREFIX_INFO => return Err(bad("prefix information", "32")),
            // 2 reserved, 4 lifetime, then 16 per address: 24, 40, 56... bytes in all.
            opt::RDNSS if body.len() >= 22 && (body.len() - 6).is_multiple_of(16) => {
                let servers = body[6..].chunks_exact(16).map(ipv6).collect();
                ra.rdnss = Some((word(2), servers));
            }
            opt::RDNSS => return Err(bad("RDNSS", "8 + 16 per server, at least one")),
            _ => {}
        }
    }
    Ok(ra)
}

fn header(icmp: &[u8], ty: u8, what: &'static str, need: usize) -> Result<(), NdpError> {
    if let Some(&found) = icmp.first()
        && found != ty
    {
        let expected = if ty == TYPE_RS {
            "133 (router solicitation)"
        } else {
            "134 (router advertisement)"
        };
        return Err(NdpError::WrongType { found, expected });
    }
    if icmp.len() < need {
        return Err(NdpError::Truncated {
            what,
            need,
            len: icmp.len(),
        });
    }
    match icmp[1] {
        0 => Ok(()),
        code => Err(NdpError::BadCode { what, code }),
    }
}

/// One ND option: (type, offset of the option, bytes after type and length).
type NdOption<'a> = (u8, usize, &'a [u8]);

/// The options after `start`.
fn options(icmp: &[u8], start: usize) -> Result<Vec<NdOption<'_>>, NdpError> {
    let mut out = Vec::new();
    let mut at = start;
    while at < icmp.len() {
        let kind = icmp[at];
        let Some(&units) = icmp.get(at + 1) else {
            return Err(NdpError::OptionOverrun {
                kind,
                offset: at,
                len: 2,
                left: 1,
            });
        };
        if units == 0 {
            return Err(NdpError::ZeroLengthOption { kind, offset: at });
        }
        let len = usize::from(units) * 8;
        let body = icmp.get(at + 2..at + len).ok_or(NdpError::OptionOverrun {
            kind,
            offset: at,
            len,
            left: icmp.len() - at,
        })?;
        out.push((kind, at, body));
        at += len;
    }
    Ok(out)
}

fn source_ll(offset: usize, body: &[u8]) -> Result<MacAddr, NdpError> {
    let mac: [u8; 6] = body.try_into().map_err(|_| NdpError::OptionLength {
        kind: opt::SOURCE_LL,
        name: "source link-layer address",
        offset,
        len: body.len() + 2,
        expected: "8 (Ethernet)",
    })?;
    Ok(MacAddr(mac))
}

fn ipv6(bytes: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&bytes[..16]);
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicitations_parse_with_and_without_source_address() {
        let bare = [133, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_router_solicitation(&bare),
            Ok(RouterSolicitation { source_mac: None })
        );
        let with = [133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 10];
        let rs = parse_router_solicitation(&with).expect("RS with SLLA");
        assert_eq!(rs.source_mac, Some(MacAddr([2, 0, 0, 0, 0, 10])));
        // An unknown option (type 14, nonce) is skipped.
        let nonce = [133, 0, 0, 0, 0, 0, 0, 0, 14, 1, 1, 2, 3, 4, 5, 6];
        assert_eq!(
            parse_router_solicitation(&nonce),
            Ok(RouterSolicitation { source_mac: None })
        );
    }

    #[test]
    fn bad_solicitations_are_named() {
        let cases: [(&[u8], &str); 6] = [
            (&[134, 0, 0, 0, 0, 0, 0, 0], "type 134 is not 133"),
            (&[133, 1, 0, 0, 0, 0, 0, 0], "code 1"),
            (&[133, 0, 0, 0], "needs 8 bytes, has 4"),
            (
                &[133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
                "length 0",
            ),
            (
                &[133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0],
                "claims 16 bytes, only 8",
            ),
            (
                &[
                    133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
                "expected 8 (Ethernet)",
            ),
        ];
        for (bytes, needle) in cases {
            let err = parse_router_solicitation(bytes).expect_err("bad RS accepted");
            assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
        }
    }
}
