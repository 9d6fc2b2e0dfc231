//! [`build_reply`]: the OFFER, ACK or NAK for one client request, per RFC 2131 table 3.
//! Offers and acks carry the whole configuration whether or not the client asked for each
//! option (a guest that did not ask for the MTU still needs it), so a guest never depends
//! on its parameter request list being complete.

use std::net::Ipv4Addr;

use super::{DhcpMessage, MAGIC_COOKIE, MessageType, OPTIONS_OFFSET, opt};
use crate::config::GuestNetConfig;

/// BOOTP's minimum message size; some clients drop anything shorter.
const MIN_LEN: usize = 300;

/// Builds the reply of type `kind` (Offer, Ack or Nak) to `req`.
///
/// An ack to an INFORM carries no address and no lease times (RFC 2131 4.3.5).
pub fn build_reply(cfg: &GuestNetConfig, req: &DhcpMessage, kind: MessageType) -> Vec<u8> {
    let inform = req.kind == MessageType::Inform;
    let gives_address = matches!(kind, MessageType::Offer | MessageType::Ack) && !inform;
    let mut b = vec![0u8; OPTIONS_OFFSET];
    b[0] = 2; // BOOTREPLY
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&req.xid.to_be_bytes());
    b[10..12].copy_from_slice(&req.flags.to_be_bytes());
    if kind == MessageType::Ack {
        b[12..16].copy_from_slice(&req.ciaddr.octets());
    }
    if gives_address {
        b[16..20].copy_from_slice(&cfg.guest_v4.octets());
    }
    b[24..28].copy_from_slice(&req.giaddr.octets());
    b[28..34].copy_from_slice(&req.chaddr.octets());
    b[236..240].copy_from_slice(&MAGIC_COOKIE);

    put(&mut b, opt::MESSAGE_TYPE, &[kind as u8]);
    put(&mut b, opt::SERVER_ID, &cfg.gateway_v4.octets());
    if gives_address {
        let lease = cfg.lease_secs;
        put(&mut b, opt::LEASE_TIME, &lease.to_be_bytes());
        if lease != u32::MAX {
            put(&mut b, opt::RENEWAL_T1, &(lease / 2).to_be_bytes());
            put(&mut b, opt::REBINDING_T2, &(lease / 8 * 7).to_be_bytes());
        }
    }
    if matches!(kind, MessageType::Offer | MessageType::Ack) {
        put(&mut b, opt::SUBNET_MASK, &cfg.mask_v4().octets());
        put(&mut b, opt::BROADCAST, &cfg.broadcast_v4().octets());
        put(&mut b, opt::ROUTER, &cfg.gateway_v4.octets());
        if !cfg.dns_v4.is_empty() {
            put(&mut b, opt::DNS, &flatten(&cfg.dns_v4));
        }
        put(&mut b, opt::MTU, &cfg.mtu.to_be_bytes());
    }
    if kind == MessageType::Nak {
        put(&mut b, opt::MESSAGE, b"address not assigned to this client");
    }
    // RFC 6842: a client identifier the client sent comes back unaltered.
    if let Some(id) = req.client_id() {
        put(&mut b, opt::CLIENT_ID, id);
    }
    b.push(opt::END);
    if b.len() < MIN_LEN {
        b.resize(MIN_LEN, opt::PAD);
    }
    b
}

/// Appends one option; data longer than 255 bytes is split into repeated options (RFC
/// 3396), which cannot happen with the lengths `GuestNetConfig::validate` allows.
fn put(b: &mut Vec<u8>, code: u8, data: &[u8]) {
    for chunk in data.chunks(255) {
        b.push(code);
        b.push(chunk.len() as u8); // at most 255 by `chunks(255)`
        b.extend_from_slice(chunk);
    }
}

fn flatten(addrs: &[Ipv4Addr]) -> Vec<u8> {
    addrs.iter().flat_map(|a| a.octets()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::sample;
    use crate::dhcp::{BootOp, parse, parse::tests::discover};

    #[test]
    fn an_offer_carries_the_whole_configuration() {
        let cfg = sample();
        let req = parse(&discover(cfg.guest_mac.octets())).expect("discover");
        let bytes = build_reply(&cfg, &req, MessageType::Offer);
        assert!(bytes.len() >= MIN_LEN);
        let offer = parse(&bytes).expect("our offer parses");
        assert_eq!((offer.op, offer.kind), (BootOp::Reply, MessageType::Offer));
        assert_eq!((offer.xid, offer.chaddr), (req.xid, req.chaddr));
        assert_eq!(offer.yiaddr, cfg.guest_v4);
        assert_eq!(offer.server_id(), Some(cfg.gateway_v4));
        assert_eq!(offer.subnet_mask(), Some(cfg.mask_v4()));
        assert_eq!(offer.routers(), [cfg.gateway_v4]);
        assert_eq!(offer.dns_servers(), cfg.dns_v4);
        assert_eq!(offer.mtu(), Some(1400));
        assert_eq!(offer.lease_secs(), Some(3600));
        assert_eq!(
            offer.option(opt::RENEWAL_T1),
            Some(&1800u32.to_be_bytes()[..])
        );
        assert_eq!(offer.client_id(), req.client_id());
    }

    #[test]
    fn a_nak_gives_nothing_and_an_inform_ack_gives_no_lease() {
        let cfg = sample();
        let req = parse(&discover(cfg.guest_mac.octets())).expect("discover");
        let nak = parse(&build_reply(&cfg, &req, MessageType::Nak)).expect("nak");
        assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!((nak.lease_secs(), nak.routers()), (None, vec![]));
        assert_eq!(nak.server_id(), Some(cfg.gateway_v4));
        let mut inform = req.clone();
        inform.kind = MessageType::Inform;
        inform.ciaddr = cfg.guest_v4;
        let ack = parse(&build_reply(&cfg, &inform, MessageType::Ack)).expect("ack");
        assert_eq!(
            (ack.yiaddr, ack.ciaddr),
            (Ipv4Addr::UNSPECIFIED, cfg.guest_v4)
        );
        assert_eq!(ack.lease_secs(), None);
        assert_eq!(ack.routers(), [cfg.gateway_v4]);
    }
}
