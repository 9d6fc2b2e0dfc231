//! Plan → libnftnl objects: each [`Match`] and [`Action`] becomes the expressions `nft`
//! itself would emit for it (registers, payload offsets, byte orders), so `nft list
//! table inet cork` prints cork's rules readably, and so the same objects, printed by
//! libnftnl, are what [`crate::kernel::read_back`] expects the kernel to report.

use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};

use nftnl::nftnl_sys as sys;

use crate::plan::{Action, ChainPlan, ChainType, Cmp, Family, Hook, Match, RulePlan};
use crate::sys::{Chain, Expr, Rule, c};

/// NFT_REG_1 / NFT_REG_2 (the 16-byte registers nft uses for addresses and ports).
const REG1: u32 = libc::NFT_REG_1 as u32;
const REG2: u32 = libc::NFT_REG_2 as u32;
const REG_VERDICT: u32 = libc::NFT_REG_VERDICT as u32;
/// IPS_DST_NAT (linux/netfilter/nf_conntrack_common.h).
const IPS_DST_NAT: u32 = 0x20;
/// NF_CT_STATE_BIT(ESTABLISHED) | NF_CT_STATE_BIT(RELATED).
const CT_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;
/// NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED. The kernel derives these from
/// the registers given, and reports them back with max registers equal to the min ones
/// (nft_nat_init/nft_nat_dump), so the plan sets all of them and reads back identically.
const NAT_FLAGS: u32 = 0x1 | 0x2;

/// The base chain object of a plan chain (policy accept).
pub(crate) fn chain(table: &CStr, plan: &ChainPlan) -> Chain {
    let chain_type = match plan.chain_type {
        ChainType::Filter => c"filter",
        ChainType::Nat => c"nat",
    };
    Chain::new(table, &c(&plan.name)).base(
        chain_type,
        hook_number(plan.hook),
        plan.priority,
        libc::NF_ACCEPT as u32,
    )
}

/// The kernel's number of a hook.
pub(crate) fn hook_number(hook: Hook) -> u32 {
    (match hook {
        Hook::Prerouting => libc::NF_INET_PRE_ROUTING,
        Hook::Input => libc::NF_INET_LOCAL_IN,
        Hook::Forward => libc::NF_INET_FORWARD,
        Hook::Postrouting => libc::NF_INET_POST_ROUTING,
    }) as u32
}

/// The rule object of a plan rule in chain `chain`.
pub(crate) fn rule(table: &CStr, chain: &str, plan: &RulePlan) -> Rule {
    let mut rule = Rule::new(table, &c(chain));
    for m in &plan.matches {
        matcher(&mut rule, m);
    }
    action(&mut rule, &plan.action);
    rule
}

fn meta(key: libc::c_int) -> Expr {
    Expr::new(c"meta")
        .u32(sys::NFTNL_EXPR_META_KEY, key as u32)
        .u32(sys::NFTNL_EXPR_META_DREG, REG1)
}

fn payload(base: libc::c_int, offset: u32, len: u32) -> Expr {
    Expr::new(c"payload")
        .u32(sys::NFTNL_EXPR_PAYLOAD_DREG, REG1)
        .u32(sys::NFTNL_EXPR_PAYLOAD_BASE, base as u32)
        .u32(sys::NFTNL_EXPR_PAYLOAD_OFFSET, offset)
        .u32(sys::NFTNL_EXPR_PAYLOAD_LEN, len)
}

fn cmp(op: Cmp, data: &[u8]) -> Expr {
    let op = match op {
        Cmp::Eq => libc::NFT_CMP_EQ,
        Cmp::Neq => libc::NFT_CMP_NEQ,
    };
    Expr::new(c"cmp")
        .u32(sys::NFTNL_EXPR_CMP_SREG, REG1)
        .u32(sys::NFTNL_EXPR_CMP_OP, op as u32)
        .data(sys::NFTNL_EXPR_CMP_DATA, data)
}

/// `reg1 = reg1 & mask` on a 32-bit host-order value (marks, ct state/status).
fn and_mask(mask: u32) -> Expr {
    Expr::new(c"bitwise")
        .u32(sys::NFTNL_EXPR_BITWISE_SREG, REG1)
        .u32(sys::NFTNL_EXPR_BITWISE_DREG, REG1)
        .u32(sys::NFTNL_EXPR_BITWISE_LEN, 4)
        .data(sys::NFTNL_EXPR_BITWISE_MASK, &mask.to_ne_bytes())
        .data(sys::NFTNL_EXPR_BITWISE_XOR, &0u32.to_ne_bytes())
}

fn ct(key: libc::c_int) -> Expr {
    Expr::new(c"ct")
        .u32(sys::NFTNL_EXPR_CT_KEY, key as u32)
        .u32(sys::NFTNL_EXPR_CT_DREG, REG1)
}

/// An interface name as nft compares it: the whole IFNAMSIZ buffer, zero-padded.
fn ifname(name: &str) -> [u8; 16] {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    buf
}

fn matcher(rule: &mut Rule, m: &Match) {
    use libc::NFT_PAYLOAD_TRANSPORT_HEADER as TH;
    use libc::{NFT_PAYLOAD_LL_HEADER as LL, NFT_PAYLOAD_NETWORK_HEADER as NH};
    match m {
        Match::IifName(op, name) => {
            rule.push(meta(libc::NFT_META_IIFNAME));
            rule.push(cmp(*op, &ifname(name)));
        }
        Match::OifName(op, name) => {
            rule.push(meta(libc::NFT_META_OIFNAME));
            rule.push(cmp(*op, &ifname(name)));
        }
        Match::EtherSaddr(mac) => {
            // nft's dependency for a link-layer match: the input device is Ethernet.
            rule.push(meta(libc::NFT_META_IIFTYPE));
            rule.push(cmp(Cmp::Eq, &libc::ARPHRD_ETHER.to_ne_bytes()));
            rule.push(payload(LL, 6, 6));
            rule.push(cmp(Cmp::Eq, mac));
        }
        Match::NfProto(family) => {
            let proto = match family {
                Family::Ipv4 => libc::NFPROTO_IPV4,
                Family::Ipv6 => libc::NFPROTO_IPV6,
            };
            rule.push(meta(libc::NFT_META_NFPROTO));
            rule.push(cmp(Cmp::Eq, &[proto as u8]));
        }
        Match::L4Proto(l4) => {
            rule.push(meta(libc::NFT_META_L4PROTO));
            rule.push(cmp(Cmp::Eq, &[l4.number()]));
        }
        Match::Ip4Saddr(a) => {
            rule.push(payload(NH, 12, 4));
            rule.push(cmp(Cmp::Eq, &a.octets()));
        }
        Match::Ip4Daddr(op, a) => {
            rule.push(payload(NH, 16, 4));
            rule.push(cmp(*op, &a.octets()));
        }
        Match::Ip6Saddr(a, len) => {
            // A byte-aligned prefix is a shorter load, as nft does it: no mask needed.
            let n = u32::from(*len / 8);
            rule.push(payload(NH, 8, n));
            rule.push(cmp(Cmp::Eq, &a.octets()[..n as usize]));
        }
        Match::Ip6Daddr(op, a) => {
            rule.push(payload(NH, 24, 16));
            rule.push(cmp(*op, &a.octets()));
        }
        Match::Sport(_, port) => {
            rule.push(payload(TH, 0, 2));
            rule.push(cmp(Cmp::Eq, &port.to_be_bytes()));
        }
        Match::Dport(_, port) => {
            rule.push(payload(TH, 2, 2));
            rule.push(cmp(Cmp::Eq, &port.to_be_bytes()));
        }
        Match::Icmpv6Type(t) => {
            rule.push(payload(TH, 0, 1));
            rule.push(cmp(Cmp::Eq, &[*t]));
        }
        Match::Mark { mask, value } => {
            rule.push(meta(libc::NFT_META_MARK));
            rule.push(and_mask(*mask));
            rule.push(cmp(Cmp::Eq, &value.to_ne_bytes()));
        }
        Match::CtEstablishedRelated => {
            rule.push(ct(libc::NFT_CT_STATE));
            rule.push(and_mask(CT_ESTABLISHED_RELATED));
            rule.push(cmp(Cmp::Neq, &0u32.to_ne_bytes()));
        }
        Match::CtDnat => {
            rule.push(ct(libc::NFT_CT_STATUS));
            rule.push(and_mask(IPS_DST_NAT));
            rule.push(cmp(Cmp::Neq, &0u32.to_ne_bytes()));
        }
    }
}

fn verdict(code: libc::c_int) -> Expr {
    Expr::new(c"immediate")
        .u32(sys::NFTNL_EXPR_IMM_DREG, REG_VERDICT)
        .u32(sys::NFTNL_EXPR_IMM_VERDICT, code as u32)
}

fn immediate(reg: u32, data: &[u8]) -> Expr {
    Expr::new(c"immediate")
        .u32(sys::NFTNL_EXPR_IMM_DREG, reg)
        .data(sys::NFTNL_EXPR_IMM_DATA, data)
}

fn action(rule: &mut Rule, a: &Action) {
    match a {
        Action::Accept => rule.push(verdict(libc::NF_ACCEPT)),
        Action::Drop => rule.push(verdict(libc::NF_DROP)),
        Action::Return => rule.push(verdict(libc::NFT_RETURN)),
        Action::Masquerade => rule.push(Expr::new(c"masq")),
        Action::Dnat(to) => {
            let (family, addr) = match to {
                SocketAddr::V4(s) => (libc::NFPROTO_IPV4, IpAddr::V4(*s.ip())),
                SocketAddr::V6(s) => (libc::NFPROTO_IPV6, IpAddr::V6(*s.ip())),
            };
            let octets = match addr {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            rule.push(immediate(REG1, &octets));
            rule.push(immediate(REG2, &to.port().to_be_bytes()));
            rule.push(
                Expr::new(c"nat")
                    .u32(sys::NFTNL_EXPR_NAT_TYPE, libc::NFT_NAT_DNAT as u32)
                    .u32(sys::NFTNL_EXPR_NAT_FAMILY, family as u32)
                    .u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, REG1)
                    .u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MAX, REG1)
                    .u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, REG2)
                    .u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MAX, REG2)
                    .u32(sys::NFTNL_EXPR_NAT_FLAGS, NAT_FLAGS),
            );
        }
    }
}
