//! The description of kernel state a bottle needs: chains of rules in cork's `inet`
//! table, as plain data. It is what golden tests compare, what [`crate::kernel`] compiles
//! to nftnl expressions and sends in one batch, and what it reads back against. Display
//! prints it in `nft` syntax, close to what `nft list table inet cork` shows.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// cork's table (family `inet`), shared by every VM bottle on the host.
pub const TABLE: &str = "cork";

/// A base chain's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

/// The netfilter hook a base chain is registered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Postrouting,
}

/// Equal or not equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Neq,
}

/// A layer-3 family (`meta nfproto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// A layer-4 protocol (`meta l4proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
    Icmpv6,
}

impl L4 {
    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4::Tcp => 6,
            L4::Udp => 17,
            L4::Icmpv6 => 58,
        }
    }
}

/// One condition of a rule. A payload match is only meaningful after the `meta nfproto`
/// / `meta l4proto` match that makes it apply; the plan builder always puts one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    IifName(Cmp, String),
    OifName(Cmp, String),
    EtherSaddr([u8; 6]),
    NfProto(Family),
    L4Proto(L4),
    Ip4Saddr(Ipv4Addr),
    Ip4Daddr(Cmp, Ipv4Addr),
    /// `ip6 saddr ADDR/PREFIX` (prefix a multiple of 8, 8..=128).
    Ip6Saddr(Ipv6Addr, u8),
    Ip6Daddr(Cmp, Ipv6Addr),
    Sport(L4, u16),
    Dport(L4, u16),
    Icmpv6Type(u8),
    /// `meta mark & MASK == VALUE`.
    Mark {
        mask: u32,
        value: u32,
    },
    /// `ct state established,related`.
    CtEstablishedRelated,
    /// `ct status dnat`: the connection's destination was translated.
    CtDnat,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    /// Leave this chain (for a base chain: its policy, accept).
    Return,
    /// Destination NAT to this address and port (nat chains only).
    Dnat(SocketAddr),
    /// Source NAT to the outgoing interface's address (nat chains only).
    Masquerade,
}

/// One rule: every match, then the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    pub matches: Vec<Match>,
    pub action: Action,
}

impl RulePlan {
    pub fn new(matches: Vec<Match>, action: Action) -> Self {
        RulePlan { matches, action }
    }
}

/// One base chain (policy accept: other traffic at the hook is none of ours) and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlan {
    pub name: String,
    pub chain_type: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub rules: Vec<RulePlan>,
}

/// Everything one bottle owns in [`TABLE`]: its chains, all named `b<id>_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BottlePlan {
    pub id: u32,
    pub chains: Vec<ChainPlan>,
}

/// The prefix of every chain of bottle `id`.
pub fn chain_prefix(id: u32) -> String {
    format!("b{id}_")
}

/// The bottle id a chain name belongs to (`b<id>_<anything>`).
pub fn bottle_of_chain(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('b')?;
    let (id, suffix) = rest.split_once('_')?;
    let canonical = !id.is_empty() && !id.starts_with('0') && !suffix.is_empty();
    canonical.then(|| id.parse().ok()).flatten()
}

impl fmt::Display for ChainType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        })
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Postrouting => "postrouting",
        })
    }
}

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cmp::Eq => "",
            Cmp::Neq => "!= ",
        })
    }
}

impl fmt::Display for L4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
            L4::Icmpv6 => "icmpv6",
        })
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::IifName(c, n) => write!(f, "iifname {c}\"{n}\""),
            Match::OifName(c, n) => write!(f, "oifname {c}\"{n}\""),
            Match::EtherSaddr(m) => write!(
                f,
                "ether saddr {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            Match::NfProto(Family::Ipv4) => f.write_str("meta nfproto ipv4"),
            Match::NfProto(Family::Ipv6) => f.write_str("meta nfproto ipv6"),
            Match::L4Proto(p) => write!(f, "meta l4proto {p}"),
            Match::Ip4Saddr(a) => write!(f, "ip saddr {a}"),
            Match::Ip4Daddr(c, a) => write!(f, "ip daddr {c}{a}"),
            Match::Ip6Saddr(a, 128) => write!(f, "ip6 saddr {a}"),
            Match::Ip6Saddr(a, len) => write!(f, "ip6 saddr {a}/{len}"),
            Match::Ip6Daddr(c, a) => write!(f, "ip6 daddr {c}{a}"),
            Match::Sport(p, port) => write!(f, "{p} sport {port}"),
            Match::Dport(p, port) => write!(f, "{p} dport {port}"),
            Match::Icmpv6Type(t) => write!(f, "icmpv6 type {t}"),
            Match::Mark { mask, value } => write!(f, "meta mark & {mask:#010x} == {value:#010x}"),
            Match::CtEstablishedRelated => f.write_str("ct state established,related"),
            Match::CtDnat => f.write_str("ct status dnat"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Accept => f.write_str("accept"),
            Action::Drop => f.write_str("drop"),
            Action::Return => f.write_str("return"),
            Action::Dnat(SocketAddr::V4(to)) => write!(f, "dnat ip to {to}"),
            Action::Dnat(SocketAddr::V6(to)) => write!(f, "dnat ip6 to {to}"),
            Action::Masquerade => f.write_str("masquerade"),
        }
    }
}

impl fmt::Display for RulePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            write!(f, "{m} ")?;
        }
        write!(f, "{}", self.action)
    }
}

impl fmt::Display for ChainPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\tchain {} {{", self.name)?;
        writeln!(
            f,
            "\t\ttype {} hook {} priority {}; policy accept;",
            self.chain_type, self.hook, self.priority
        )?;
        for r in &self.rules {
            writeln!(f, "\t\t{r}")?;
        }
        writeln!(f, "\t}}")
    }
}

impl fmt::Display for BottlePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table inet {TABLE} {{")?;
        for (i, c) in self.chains.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{c}")?;
        }
        writeln!(f, "}}")
    }
}

/// The family of an address, for the `meta nfproto` match a payload match needs.
pub(crate) fn family_of(ip: IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::Ipv4,
        IpAddr::V6(_) => Family::Ipv6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_map_back_to_bottles() {
        assert_eq!(bottle_of_chain("b7_in"), Some(7));
        assert_eq!(bottle_of_chain("b65535_guard"), Some(65535));
        for other in ["b_in", "b07_in", "b7", "b7_", "x7_in", "bx_in", "in"] {
            assert_eq!(bottle_of_chain(other), None, "{other}");
        }
        assert_eq!(
            bottle_of_chain(&format!("{}pre", chain_prefix(12))),
            Some(12)
        );
    }
}
