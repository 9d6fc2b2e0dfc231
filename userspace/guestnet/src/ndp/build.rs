//! [`build_router_advertisement`]: a [`RouterAdvertisement`] to ICMPv6 bytes (checksum
//! left zero: the kernel computes it for raw ICMPv6 sockets, RFC 3542 3.1).

use super::{RouterAdvertisement, TYPE_RA, opt};

/// Serialises `ra`: header, then source link-layer address, MTU, prefixes and RDNSS.
pub fn build_router_advertisement(ra: &RouterAdvertisement) -> Vec<u8> {
    let mut b = vec![TYPE_RA, 0, 0, 0, ra.cur_hop_limit];
    b.push(u8::from(ra.managed) << 7 | u8::from(ra.other) << 6);
    b.extend_from_slice(&ra.router_lifetime_secs.to_be_bytes());
    b.extend_from_slice(&ra.reachable_ms.to_be_bytes());
    b.extend_from_slice(&ra.retrans_ms.to_be_bytes());
    if let Some(mac) = ra.source_mac {
        b.extend_from_slice(&[opt::SOURCE_LL, 1]);
        b.extend_from_slice(&mac.octets());
    }
    if let Some(mtu) = ra.mtu {
        b.extend_from_slice(&[opt::MTU, 1, 0, 0]);
        b.extend_from_slice(&mtu.to_be_bytes());
    }
    for p in &ra.prefixes {
        b.extend_from_slice(&[opt::PREFIX_INFO, 4, p.len]);
        b.push(u8::from(p.on_link) << 7 | u8::from(p.autonomous) << 6);
        b.extend_from_slice(&p.valid_secs.to_be_bytes());
        b.extend_from_slice(&p.preferred_secs.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&p.prefix.octets());
    }
    if let Some((lifetime, servers)) = &ra.rdnss {
        // Length in 8-byte units: 1 for the fixed part, 2 per address. Validation caps
        // the server count far below the 127 that would overflow the byte.
        let units = 1 + 2 * servers.len().min(127);
        b.extend_from_slice(&[opt::RDNSS, units as u8, 0, 0]);
        b.extend_from_slice(&lifetime.to_be_bytes());
        for s in servers.iter().take(127) {
            b.extend_from_slice(&s.octets());
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::sample;
    use crate::mac::MacAddr;
    use crate::ndp::{PREFIX_VALID_SECS, RDNSS_LIFETIME_SECS, parse_router_advertisement};

    #[test]
    fn the_guest_advertisement_has_every_option_in_place() {
        let cfg = sample();
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let ra = RouterAdvertisement::for_guest(&cfg, mac);
        let bytes = build_router_advertisement(&ra);
        // 16 header + 8 SLLA + 8 MTU + 32 prefix + 24 RDNSS (one server).
        assert_eq!(bytes.len(), 88);
        assert_eq!(&bytes[16..24], &[1, 1, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&bytes[24..32], &[5, 1, 0, 0, 0, 0, 0x05, 0x78]);
        assert_eq!(&bytes[32..36], &[3, 4, 64, 0xc0]);
        assert_eq!(&bytes[36..40], &PREFIX_VALID_SECS.to_be_bytes());
        assert_eq!(&bytes[48..64], &cfg.prefix_v6.octets());
        assert_eq!(&bytes[64..68], &[25, 3, 0, 0]);
        assert_eq!(&bytes[68..72], &RDNSS_LIFETIME_SECS.to_be_bytes());
        assert_eq!(&bytes[72..88], &cfg.dns_v6[0].octets());
        assert_eq!(parse_router_advertisement(&bytes), Ok(ra));
    }
}
