//! DHCPv4 (RFC 2131/2132) as cork's guest sees it: the message model, the parser
//! ([`parse`]), the reply builder ([`build`]) and the server's decision for one request
//! ([`answer`]). Pure: bytes in, bytes and decisions out; the socket lives in `server`.
//!
//! Only what a single directly attached guest needs is modelled: Ethernet clients, no
//! relays, one fixed address. Option overload (52) is ignored: `sname` and `file` are
//! never read for options, and the options every client sends fit in the main field.

mod answer;
mod build;
mod parse;

use std::net::Ipv4Addr;

pub use answer::{Answer, Ignored, answer};
pub use build::build_reply;
pub use parse::parse;

use crate::mac::MacAddr;

/// UDP port the server listens on.
pub const SERVER_PORT: u16 = 67;
/// UDP port clients listen on.
pub const CLIENT_PORT: u16 = 68;
/// The BOOTP fixed header is 236 bytes, then the magic cookie.
pub const OPTIONS_OFFSET: usize = 240;
/// RFC 2131's magic cookie, first four bytes of the options field.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The broadcast bit of `flags`.
pub const FLAG_BROADCAST: u16 = 0x8000;

/// Option codes this crate reads or writes (RFC 2132 unless noted).
pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const MTU: u8 = 26;
    pub const BROADCAST: u8 = 28;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAM_REQUEST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_SIZE: u8 = 57;
    pub const RENEWAL_T1: u8 = 58;
    pub const REBINDING_T2: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

/// BOOTP `op`: who sent the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootOp {
    Request = 1,
    Reply = 2,
}

/// DHCP message type (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    /// The type for an option-53 value, if it is one of RFC 2131's eight.
    pub fn from_u8(value: u8) -> Option<Self> {
        use MessageType::*;
        Some(match value {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            _ => return None,
        })
    }
}

/// A parsed DHCP message: the BOOTP fields that matter and the options, each option's
/// length already checked for the codes this crate reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpMessage {
    pub op: BootOp,
    pub kind: MessageType,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: MacAddr,
    /// Options in order of first appearance; repeated codes are concatenated (RFC 3396).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl DhcpMessage {
    /// The data of option `code`, if present.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    fn ipv4_option(&self, code: u8) -> Option<Ipv4Addr> {
        let d = self.option(code)?;
        Some(Ipv4Addr::from(<[u8; 4]>::try_from(d).ok()?))
    }

    fn ipv4_list(&self, code: u8) -> Vec<Ipv4Addr> {
        self.option(code)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect()
    }

    fn u32_option(&self, code: u8) -> Option<u32> {
        Some(u32::from_be_bytes(self.option(code)?.try_into().ok()?))
    }

    /// Option 50, the address a client in SELECTING/INIT-REBOOT asks for.
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.ipv4_option(opt::REQUESTED_IP)
    }
    /// Option 54, the server a client chose.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.ipv4_option(opt::SERVER_ID)
    }
    /// Option 61, the client identifier (type byte + identifier), echoed in replies.
    pub fn client_id(&self) -> Option<&[u8]> {
        self.option(opt::CLIENT_ID)
    }
    /// Option 55, the option codes the client asks for.
    pub fn param_request_list(&self) -> &[u8] {
        self.option(opt::PARAM_REQUEST).unwrap_or_default()
    }
    /// Option 1.
    pub fn subnet_mask(&self) -> Option<Ipv4Addr> {
        self.ipv4_option(opt::SUBNET_MASK)
    }
    /// Option 3.
    pub fn routers(&self) -> Vec<Ipv4Addr> {
        self.ipv4_list(opt::ROUTER)
    }
    /// Option 6.
    pub fn dns_servers(&self) -> Vec<Ipv4Addr> {
        self.ipv4_list(opt::DNS)
    }
    /// Option 26.
    pub fn mtu(&self) -> Option<u16> {
        Some(u16::from_be_bytes(self.option(opt::MTU)?.try_into().ok()?))
    }
    /// Option 51.
    pub fn lease_secs(&self) -> Option<u32> {
        self.u32_option(opt::LEASE_TIME)
    }
}

/// Why bytes are not a DHCP message this server can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    #[error("DHCP message truncated in {field}: needs {need} bytes at offset {offset}, has {len}")]
    Truncated {
        field: &'static str,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error("BOOTP op {op} is neither request (1) nor reply (2)")]
    BadOp { op: u8 },
    #[error("hardware type {htype} / address length {hlen} is not Ethernet (1 / 6)")]
    NotEthernet { htype: u8, hlen: u8 },
    #[error("magic cookie {found:02x?} at offset 236 is not 63 82 53 63 (plain BOOTP?)")]
    BadCookie { found: [u8; 4] },
    #[error("option {code} at offset {offset} claims {len} bytes, only {left} remain")]
    OptionOverrun {
        code: u8,
        offset: usize,
        len: usize,
        left: usize,
    },
    #[error("option {code} ({name}) has length {len}, expected {expected}")]
    OptionLength {
        code: u8,
        name: &'static str,
        len: usize,
        expected: &'static str,
    },
    #[error("options end without the End option (255)")]
    MissingEnd,
    #[error("no DHCP message type option (53)")]
    MissingMessageType,
    #[error("DHCP message type {value} is not one of RFC 2131's (1..=8)")]
    UnknownMessageType { value: u8 },
}
