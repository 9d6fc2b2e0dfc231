//! [`answer`]: what the server does with one parsed message from the tap: reply (and to
//! where), or ignore it with a reason worth logging. This is where anti-spoofing lives:
//! only the configured guest MAC is served, and only ever the one configured address.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::{BootOp, CLIENT_PORT, DhcpMessage, MessageType, build_reply};
use crate::config::GuestNetConfig;
use crate::mac::MacAddr;

/// The server's decision for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send `packet` (a `kind` message) to `to`.
    Reply {
        kind: MessageType,
        packet: Vec<u8>,
        to: SocketAddrV4,
    },
    /// Send nothing.
    Ignore(Ignored),
}

/// Why a message got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// A BOOTREPLY or a server-side message type (another DHCP server on the link?).
    NotFromClient { kind: MessageType },
    /// A hardware address other than the guest's: spoofing, or a second NIC.
    ForeignClient { chaddr: MacAddr },
    /// Relayed (giaddr set): a directly attached guest never is.
    Relayed { giaddr: Ipv4Addr },
    /// The client chose another server's offer.
    OtherServer { server_id: Ipv4Addr },
    /// An INFORM from an address that is not the guest's.
    ForeignCiaddr { ciaddr: Ipv4Addr },
    /// The guest says its address is in use by someone else.
    Declined,
    /// The guest gave its address back.
    Released,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFromClient { kind } => write!(f, "{kind:?} is not a client message"),
            Self::ForeignClient { chaddr } => {
                write!(f, "client hardware address {chaddr} is not the guest's")
            }
            Self::Relayed { giaddr } => write!(f, "relayed through {giaddr}"),
            Self::OtherServer { server_id } => write!(f, "client chose server {server_id}"),
            Self::ForeignCiaddr { ciaddr } => {
                write!(f, "client address {ciaddr} is not the guest's")
            }
            Self::Declined => f.write_str("guest declined its address (in use on the link?)"),
            Self::Released => f.write_str("guest released its address"),
        }
    }
}

/// Decides the reply to `msg` for the guest described by `cfg`.
///
/// Replies go to the broadcast address: a client without an address cannot receive
/// unicast. The exception is RFC 2131 4.1's: an ACK to a client that already holds the
/// guest address (ciaddr, when renewing or informing) is unicast to it, since a renewing
/// client may listen on a socket bound to that address. NAKs are always broadcast.
pub fn answer(cfg: &GuestNetConfig, msg: &DhcpMessage) -> Answer {
    use MessageType::*;
    if msg.op != BootOp::Request || matches!(msg.kind, Offer | Ack | Nak) {
        return Answer::Ignore(Ignored::NotFromClient { kind: msg.kind });
    }
    if msg.chaddr != cfg.guest_mac {
        return Answer::Ignore(Ignored::ForeignClient { chaddr: msg.chaddr });
    }
    if !msg.giaddr.is_unspecified() {
        return Answer::Ignore(Ignored::Relayed { giaddr: msg.giaddr });
    }
    let kind = match msg.kind {
        Discover => Offer,
        Request => {
            if let Some(server_id) = msg.server_id().filter(|s| *s != cfg.gateway_v4) {
                return Answer::Ignore(Ignored::OtherServer { server_id });
            }
            // SELECTING and INIT-REBOOT name the address in option 50; RENEWING and
            // REBINDING put it in ciaddr.
            let wanted = msg.requested_ip().unwrap_or(msg.ciaddr);
            if wanted == cfg.guest_v4 { Ack } else { Nak }
        }
        Inform if msg.ciaddr == cfg.guest_v4 => Ack,
        Inform => {
            return Answer::Ignore(Ignored::ForeignCiaddr { ciaddr: msg.ciaddr });
        }
        Decline => return Answer::Ignore(Ignored::Declined),
        Release => return Answer::Ignore(Ignored::Released),
        Offer | Ack | Nak => return Answer::Ignore(Ignored::NotFromClient { kind: msg.kind }),
    };
    let to_ip = if kind == Ack && msg.ciaddr == cfg.guest_v4 {
        cfg.guest_v4
    } else {
        Ipv4Addr::BROADCAST
    };
    Answer::Reply {
        kind,
        packet: build_reply(cfg, msg, kind),
        to: SocketAddrV4::new(to_ip, CLIENT_PORT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::sample;
    use crate::dhcp::{parse, parse::tests::discover};

    fn msg(kind: MessageType) -> DhcpMessage {
        let mut m = parse(&discover(sample().guest_mac.octets())).expect("discover");
        m.kind = kind;
        m
    }

    fn reply(a: Answer) -> (MessageType, SocketAddrV4) {
        match a {
            Answer::Reply { kind, to, .. } => (kind, to),
            Answer::Ignore(why) => panic!("ignored: {why}"),
        }
    }

    const BCAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);

    #[test]
    fn the_guest_is_offered_and_acked_its_one_address() {
        let cfg = sample();
        assert_eq!(
            reply(answer(&cfg, &msg(MessageType::Discover))),
            (MessageType::Offer, BCAST)
        );
        let mut req = msg(MessageType::Request);
        req.options.push((50, cfg.guest_v4.octets().to_vec()));
        req.options.push((54, cfg.gateway_v4.octets().to_vec()));
        assert_eq!(reply(answer(&cfg, &req)), (MessageType::Ack, BCAST));
        // Renewing: no option 50, ciaddr set: unicast back to the guest.
        let mut renew = msg(MessageType::Request);
        renew.ciaddr = cfg.guest_v4;
        let unicast = SocketAddrV4::new(cfg.guest_v4, 68);
        assert_eq!(reply(answer(&cfg, &renew)), (MessageType::Ack, unicast));
        let mut inform = msg(MessageType::Inform);
        inform.ciaddr = cfg.guest_v4;
        assert_eq!(reply(answer(&cfg, &inform)), (MessageType::Ack, unicast));
    }

    #[test]
    fn another_address_is_naked_by_broadcast() {
        let cfg = sample();
        let mut req = msg(MessageType::Request);
        req.options.push((50, vec![198, 51, 100, 140]));
        assert_eq!(reply(answer(&cfg, &req)), (MessageType::Nak, BCAST));
        let mut renew = msg(MessageType::Request);
        renew.ciaddr = Ipv4Addr::new(198, 51, 100, 140);
        assert_eq!(reply(answer(&cfg, &renew)), (MessageType::Nak, BCAST));
        assert_eq!(
            reply(answer(&cfg, &msg(MessageType::Request))),
            (MessageType::Nak, BCAST)
        );
    }

    #[test]
    fn foreign_relayed_and_server_messages_are_ignored() {
        let cfg = sample();
        let mut foreign = msg(MessageType::Discover);
        foreign.chaddr = MacAddr([2, 0, 0, 0, 0, 0x99]);
        let chaddr = foreign.chaddr;
        assert_eq!(
            answer(&cfg, &foreign),
            Answer::Ignore(Ignored::ForeignClient { chaddr })
        );
        let mut relayed = msg(MessageType::Discover);
        relayed.giaddr = Ipv4Addr::new(198, 51, 100, 1);
        assert!(matches!(
            answer(&cfg, &relayed),
            Answer::Ignore(Ignored::Relayed { .. })
        ));
        let mut other = msg(MessageType::Request);
        other.options.push((54, vec![198, 51, 100, 1]));
        assert!(matches!(
            answer(&cfg, &other),
            Answer::Ignore(Ignored::OtherServer { .. })
        ));
        for kind in [MessageType::Offer, MessageType::Ack, MessageType::Nak] {
            assert!(matches!(
                answer(&cfg, &msg(kind)),
                Answer::Ignore(Ignored::NotFromClient { .. })
            ));
        }
        let mut reply_op = msg(MessageType::Discover);
        reply_op.op = BootOp::Reply;
        assert!(matches!(
            answer(&cfg, &reply_op),
            Answer::Ignore(Ignored::NotFromClient { .. })
        ));
        assert_eq!(
            answer(&cfg, &msg(MessageType::Decline)),
            Answer::Ignore(Ignored::Declined)
        );
        assert_eq!(
            answer(&cfg, &msg(MessageType::Release)),
            Answer::Ignore(Ignored::Released)
        );
        assert!(matches!(
            answer(&cfg, &msg(MessageType::Inform)),
            Answer::Ignore(Ignored::ForeignCiaddr { .. })
        ));
    }
}
