//! IPv6 router discovery (RFC 4861) as cork's guest sees it: router solicitations in,
//! router advertisements out, with the prefix information, MTU, source link-layer address
//! and RDNSS (RFC 8106) options. Pure: these are ICMPv6 messages without the IPv6 header
//! (what a raw ICMPv6 socket reads and writes); the kernel fills in the checksum.

mod build;
mod parse;

use std::net::Ipv6Addr;

pub use build::build_router_advertisement;
pub use parse::{parse_router_advertisement, parse_router_solicitation};

use crate::config::GuestNetConfig;
use crate::mac::MacAddr;

/// ICMPv6 type of a router solicitation.
pub const TYPE_RS: u8 = 133;
/// ICMPv6 type of a router advertisement.
pub const TYPE_RA: u8 = 134;
/// ND option types (RFC 4861 4.6, RFC 8106 5.1).
pub mod opt {
    pub const SOURCE_LL: u8 = 1;
    pub const PREFIX_INFO: u8 = 3;
    pub const MTU: u8 = 5;
    pub const RDNSS: u8 = 25;
}

/// The router lifetime advertised: long, because the guest cannot outlive cork (its VM
/// dies with cork), so there is nothing to fail over to.
pub const ROUTER_LIFETIME_SECS: u16 = 1800;
/// Prefix lifetimes: valid a day, preferred four hours (re-advertised every interval).
pub const PREFIX_VALID_SECS: u32 = 86_400;
pub const PREFIX_PREFERRED_SECS: u32 = 14_400;
/// RDNSS lifetime: RFC 8106 asks for at least 3 × MaxRtrAdvInterval (600 s at most here).
pub const RDNSS_LIFETIME_SECS: u32 = 1800;
/// The hop limit the guest should use for its own packets (0 would mean "unspecified").
pub const CUR_HOP_LIMIT: u8 = 64;

/// A router solicitation's content that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSolicitation {
    /// The source link-layer address option, if the solicitor sent one.
    pub source_mac: Option<MacAddr>,
}

/// One prefix information option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    pub len: u8,
    pub on_link: bool,
    pub autonomous: bool,
    pub valid_secs: u32,
    pub preferred_secs: u32,
}

/// A router advertisement: the fields cork sets and every option it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvertisement {
    pub cur_hop_limit: u8,
    /// The M flag: addresses from DHCPv6 (never set by cork).
    pub managed: bool,
    /// The O flag: other configuration from DHCPv6 (never set by cork).
    pub other: bool,
    pub router_lifetime_secs: u16,
    pub reachable_ms: u32,
    pub retrans_ms: u32,
    pub source_mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    pub prefixes: Vec<PrefixInfo>,
    /// RDNSS lifetime and servers; `None` when there are no servers.
    pub rdnss: Option<(u32, Vec<Ipv6Addr>)>,
}

impl RouterAdvertisement {
    /// The advertisement cork sends on a guest's tap whose MAC is `router_mac`.
    pub fn for_guest(cfg: &GuestNetConfig, router_mac: MacAddr) -> Self {
        Self {
            cur_hop_limit: CUR_HOP_LIMIT,
            managed: false,
            other: false,
            router_lifetime_secs: ROUTER_LIFETIME_SECS,
            reachable_ms: 0,
            retrans_ms: 0,
            source_mac: Some(router_mac),
            mtu: Some(u32::from(cfg.mtu)),
            prefixes: vec![PrefixInfo {
                prefix: cfg.prefix_v6,
                len: 64,
                on_link: true,
                autonomous: true,
                valid_secs: PREFIX_VALID_SECS,
                preferred_secs: PREFIX_PREFERRED_SECS,
            }],
            rdnss: (!cfg.dns_v6.is_empty()).then(|| (RDNSS_LIFETIME_SECS, cfg.dns_v6.clone())),
        }
    }
}

/// Why bytes are not a router solicitation or advertisement this crate accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdpError {
    #[error("ICMPv6 {what} truncated: needs {need} bytes, has {len}")]
    Truncated {
        what: &'static str,
        need: usize,
        len: usize,
    },
    #[error("ICMPv6 type {found} is not {expected}")]
    WrongType { found: u8, expected: &'static str },
    #[error("ICMPv6 code {code} of {what} is not 0")]
    BadCode { what: &'static str, code: u8 },
    #[error("ND option {kind} at offset {offset} has length 0 (RFC 4861 4.6: discard)")]
    ZeroLengthOption { kind: u8, offset: usize },
    #[error("ND option {kind} at offset {offset} claims {len} bytes, only {left} remain")]
    OptionOverrun {
        kind: u8,
        offset: usize,
        len: usize,
        left: usize,
    },
    #[error("ND option {kind} ({name}) at offset {offset} has {len} bytes, expected {expected}")]
    OptionLength {
        kind: u8,
        name: &'static str,
        offset: usize,
        len: usize,
        expected: &'static str,
    },
}
