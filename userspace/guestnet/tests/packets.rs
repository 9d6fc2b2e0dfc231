//! Property tests of the packet code: round trips, every prefix of a valid message, and
//! arbitrary bytes (never a panic).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use cork_guestnet::dhcp::{self, Answer, BootOp, MAGIC_COOKIE, MessageType};
use cork_guestnet::ndp::{
    PrefixInfo, RouterAdvertisement, build_router_advertisement, parse_router_advertisement,
    parse_router_solicitation,
};
use cork_guestnet::{GuestNetConfig, MacAddr};
use proptest::prelude::*;

/// A client message as a test describes it, encoded without trailing padding so that the
/// End option is the last byte.
#[derive(Debug, Clone)]
struct Req {
    kind: u8,
    xid: u32,
    flags: u16,
    ciaddr: [u8; 4],
    chaddr: [u8; 6],
    client_id: Option<Vec<u8>>,
    requested: Option<[u8; 4]>,
    server_id: Option<[u8; 4]>,
    params: Vec<u8>,
    pads: usize,
}

fn encode(r: &Req) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[..4].copy_from_slice(&[1, 1, 6, 0]);
    b[4..8].copy_from_slice(&r.xid.to_be_bytes());
    b[10..12].copy_from_slice(&r.flags.to_be_bytes());
    b[12..16].copy_from_slice(&r.ciaddr);
    b[28..34].copy_from_slice(&r.chaddr);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&[53, 1, r.kind]);
    b.extend(std::iter::repeat_n(0, r.pads));
    if let Some(id) = &r.client_id {
        b.extend_from_slice(&[61, id.len() as u8]);
        b.extend_from_slice(id);
    }
    if let Some(ip) = r.requested {
        b.extend_from_slice(&[50, 4]);
        b.extend_from_slice(&ip);
    }
    if let Some(ip) = r.server_id {
        b.extend_from_slice(&[54, 4]);
        b.extend_from_slice(&ip);
    }
    if !r.params.is_empty() {
        b.extend_from_slice(&[55, r.params.len() as u8]);
        b.extend_from_slice(&r.params);
    }
    b.push(255);
    b
}

fn req() -> impl Strategy<Value = Req> {
    (
        (
            1u8..=8,
            any::<u32>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<[u8; 6]>(),
        ),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 2..20)),
        proptest::option::of(any::<[u8; 4]>()),
        proptest::option::of(any::<[u8; 4]>()),
        proptest::collection::vec(any::<u8>(), 0..16),
        0usize..3,
    )
        .prop_map(
            |(
                (kind, xid, flags, ciaddr, chaddr),
                client_id,
                requested,
                server_id,
                params,
                pads,
            )| Req {
                kind,
                xid,
                flags,
                ciaddr,
                chaddr,
                client_id,
                requested,
                server_id,
                params,
                pads,
            },
        )
}

fn config() -> impl Strategy<Value = GuestNetConfig> {
    (
        8u8..=30,
        any::<u32>(),
        any::<u32>(),
        1280u16..,
        60u32..,
        any::<[u8; 6]>(),
    )
        .prop_filter_map(
            "guest and gateway must be distinct hosts",
            |(len, net, hosts, mtu, lease, mac)| {
                let host_bits = 32 - u32::from(len);
                let mask = u32::MAX << host_bits;
                let max_host = (1u32 << host_bits) - 2;
                let guest = 1 + (hosts & 0xffff) % max_host;
                let gateway = 1 + (hosts >> 16) % max_host;
                let mut mac = mac;
                mac[0] &= 0xfe;
                (guest != gateway && mac != [0; 6]).then(|| GuestNetConfig {
                    guest_mac: MacAddr(mac),
                    guest_v4: Ipv4Addr::from((net & mask) | guest),
                    prefix_len_v4: len,
                    gateway_v4: Ipv4Addr::from((net & mask) | gateway),
                    dns_v4: vec![Ipv4Addr::from((net & mask) | gateway)],
                    dns_v6: vec!["2001:db8:100:1::1".parse().expect("literal")],
                    prefix_v6: "2001:db8:100:1::".parse().expect("literal"),
                    mtu,
                    lease_secs: lease,
                    ra_interval: Duration::from_secs(15),
                })
            },
        )
}

fn ra() -> impl Strategy<Value = RouterAdvertisement> {
    let prefix = (
        any::<u128>(),
        0u8..=128,
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(p, len, on_link, autonomous, valid_secs, preferred_secs)| PrefixInfo {
                prefix: Ipv6Addr::from(p),
                len,
                on_link,
                autonomous,
                valid_secs,
                preferred_secs,
            },
        );
    (
        (
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
        ),
        proptest::option::of(any::<[u8; 6]>()),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(prefix, 0..3),
        proptest::option::of((any::<u32>(), proptest::collection::vec(any::<u128>(), 1..4))),
    )
        .prop_map(
            |((hop, m, o, life, reach, retrans), mac, mtu, prefixes, rdnss)| RouterAdvertisement {
                cur_hop_limit: hop,
                managed: m,
                other: o,
                router_lifetime_secs: life,
                reachable_ms: reach,
                retrans_ms: retrans,
                source_mac: mac.map(MacAddr),
                mtu,
                prefixes,
                rdnss: rdnss.map(|(l, s)| (l, s.into_iter().map(Ipv6Addr::from).collect())),
            },
        )
}

proptest! {
    #[test]
    fn client_messages_round_trip_and_every_prefix_is_an_error(r in req()) {
        let bytes = encode(&r);
        let m = dhcp::parse(&bytes).expect("encoded request parses");
        prop_assert_eq!(m.op, BootOp::Request);
        prop_assert_eq!(m.kind as u8, r.kind);
        prop_assert_eq!((m.xid, m.flags), (r.xid, r.flags));
        prop_assert_eq!(m.ciaddr, Ipv4Addr::from(r.ciaddr));
        prop_assert_eq!(m.chaddr, MacAddr(r.chaddr));
        prop_assert_eq!(m.client_id(), r.client_id.as_deref());
        prop_assert_eq!(m.requested_ip(), r.requested.map(Ipv4Addr::from));
        prop_assert_eq!(m.server_id(), r.server_id.map(Ipv4Addr::from));
        prop_assert_eq!(m.param_request_list(), &r.params[..]);
        for cut in 0..bytes.len() {
            prop_assert!(dhcp::parse(&bytes[..cut]).is_err(), "prefix of {} bytes parsed", cut);
        }
    }

    #[test]
    fn replies_give_the_configured_guest_exactly_its_configuration(cfg in config(), r in req()) {
        prop_assert_eq!(cfg.validate(), Ok(()));
        let mut r = r;
        r.chaddr = cfg.guest_mac.octets();
        let msg = dhcp::parse(&encode(&r)).expect("encoded request parses");
        if let Answer::Reply { kind, packet, to } = dhcp::answer(&cfg, &msg) {
            let reply = dhcp::parse(&packet).expect("our reply parses");
            prop_assert_eq!(reply.op, BootOp::Reply);
            prop_assert_eq!(reply.kind, kind);
            prop_assert_eq!((reply.xid, reply.chaddr), (msg.xid, msg.chaddr));
            prop_assert_eq!(reply.server_id(), Some(cfg.gateway_v4));
            prop_assert_eq!(reply.client_id(), msg.client_id());
            prop_assert!(to.ip().is_broadcast() || *to.ip() == cfg.guest_v4);
            if kind == MessageType::Offer || (kind == MessageType::Ack && msg.kind != MessageType::Inform) {
                prop_assert_eq!(reply.yiaddr, cfg.guest_v4);
                prop_assert_eq!(reply.subnet_mask(), Some(cfg.mask_v4()));
                prop_assert_eq!(reply.routers(), vec![cfg.gateway_v4]);
                prop_assert_eq!(reply.dns_servers(), cfg.dns_v4.clone());
                prop_assert_eq!(reply.mtu(), Some(cfg.mtu));
                prop_assert_eq!(reply.lease_secs(), Some(cfg.lease_secs));
            } else {
                prop_assert_eq!(reply.yiaddr, Ipv4Addr::UNSPECIFIED);
            }
        }
    }

    #[test]
    fn another_mac_never_gets_a_reply(cfg in config(), r in req()) {
        prop_assume!(r.chaddr != cfg.guest_mac.octets());
        let msg = dhcp::parse(&encode(&r)).expect("encoded request parses");
        prop_assert!(matches!(dhcp::answer(&cfg, &msg), Answer::Ignore(_)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), cfg in config()) {
        if let Ok(m) = dhcp::parse(&bytes) {
            let _ = dhcp::answer(&cfg, &m);
        }
        let _ = parse_router_solicitation(&bytes);
        let _ = parse_router_advertisement(&bytes);
        let mut rs = bytes.clone();
        if rs.len() >= 2 {
            rs[0] = 133;
            rs[1] = 0;
        }
        let _ = parse_router_solicitation(&rs);
    }

    #[test]
    fn advertisements_round_trip_and_cuts_off_option_boundaries_are_errors(ra in ra()) {
        let bytes = build_router_advertisement(&ra);
        prop_assert_eq!(parse_router_advertisement(&bytes), Ok(ra));
        // ND messages have no length of their own: only a cut at an option boundary
        // (after the 16-byte header, or after an option) is still a message.
        let mut boundaries = vec![16];
        let mut at = 16;
        while at < bytes.len() {
            at += usize::from(bytes[at + 1]) * 8;
            boundaries.push(at);
        }
        for cut in 0..bytes.len() {
            let parsed = parse_router_advertisement(&bytes[..cut]);
            prop_assert_eq!(parsed.is_ok(), boundaries.contains(&cut), "cut at {}: {:?}", cut, parsed);
        }
    }
}

#[test]
fn every_cut_of_a_solicitation_inside_an_option_is_an_error() {
    let rs = [133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 10];
    for cut in 0..rs.len() {
        let parsed = parse_router_solicitation(&rs[..cut]);
        assert_eq!(parsed.is_ok(), cut == 8, "cut at {cut}: {parsed:?}");
    }
}
