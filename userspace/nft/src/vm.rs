//! [`VmRules`], what cork knows about one VM bottle's network, and the plan it turns into:
//! the bottle's five base chains in cork's `inet` table.
//!
//! Policy is decided once, by the tc program on the tap's ingress, which marks what it
//! lets through (see [`crate::marks`]); these chains act on the marks and add what a tc
//! program cannot do — NAT, conntrack, and a second line that drops whatever carries no
//! verdict. Every chain ends in an explicit `drop` after rules that *allow* by a positive
//! match, so a rule that fails to match (a missing link-layer header, a mark the tc
//! program did not set) drops, never lets through.
//!
//! | chain          | hook, priority          | job                                             |
//! |----------------|-------------------------|-------------------------------------------------|
//! | `b<id>_guard`  | prerouting, -300 (raw)  | anti-spoofing: the guest's MAC and addresses only, before conntrack sees the packet |
//! | `b<id>_pre`    | prerouting, -100 (dstnat)| DNS mark → DNS proxy, inspect mark → inspecting proxy |
//! | `b<id>_in`     | input, 0                | to the host: the DNATed proxies, DHCP, NDP, allowed host ports on the gateway |
//! | `b<id>_fwd`    | forward, 0              | from the tap only direct-marked, to it only established/related |
//! | `b<id>_post`   | postrouting, 100 (srcnat)| masquerade what the guest sends out            |
//!
//! Each bottle has its own *base* chains (policy accept, first rule skips other
//! interfaces) rather than jump rules in shared base chains: adding, replacing and
//! removing a bottle then touch only chains it owns, no rule handles of shared chains are
//! needed, two cork processes never edit the same chain, and the table is empty exactly
//! when no bottle is left (which lets the kernel decide "delete the table if empty").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::marks::Marks;
use crate::plan::{
    Action, BottlePlan, ChainPlan, ChainType, Cmp, Family, Hook, L4, Match, RulePlan, chain_prefix,
};

/// The port DNS clients send to; the DNS mark means "UDP/TCP to this port, any address".
pub const DNS_PORT: u16 = 53;
/// Chain suffixes, in the order the plan lists them.
pub const CHAIN_SUFFIXES: [&str; 5] = ["guard", "pre", "in", "fwd", "post"];

/// One VM bottle's network as cork set it up: the input of [`VmRules::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRules {
    /// The bottle id (`cork_agent::BottleId`); chains are named `b<id>_*`.
    pub id: u32,
    /// The tap (or whatever stands in for it): the guest's only link.
    pub ifname: String,
    /// The MAC address cork gave the guest's NIC.
    pub guest_mac: [u8; 6],
    /// The guest's IPv4 address (the DHCP lease).
    pub guest_v4: Ipv4Addr,
    /// The host's address on the tap: the guest's router, DNS server and "host".
    pub gateway_v4: Ipv4Addr,
    /// The guest's IPv6 address, or the SLAAC prefix cork announced…
    pub guest_v6: Ipv6Addr,
    /// …and its length: 128 for one address, 64 for a SLAAC prefix (a multiple of 8).
    pub guest_v6_prefix: u8,
    /// The host's IPv6 address on the tap (announced as RDNSS).
    pub gateway_v6: Ipv6Addr,
    /// The host's link-local address on the tap (the router a guest learns from RAs):
    /// `host_ports` are reachable there too, as on the gateway addresses.
    pub gateway_v6_ll: Option<Ipv6Addr>,
    /// Where the bottle's DNS proxy listens on the gateway addresses.
    pub dns_port: u16,
    /// Where the bottle's inspecting proxy listens on the gateway addresses; 0 when the
    /// bottle has none (no domain allow rule): then no inspect DNAT exists, and a packet
    /// carrying the inspect mark finds no rule that accepts it.
    pub proxy_port: u16,
    /// `[loopback] host_ports`: TCP and UDP ports the guest may reach on the gateway.
    pub host_ports: Vec<u16>,
    /// The mark values the tc program sets.
    pub marks: Marks,
}

/// Why a [`VmRules`] cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("interface name {name:?}: {why}")]
    Ifname { name: String, why: &'static str },
    #[error("guest MAC {mac:02x?} is not a unicast address")]
    Mac { mac: [u8; 6] },
    #[error("guest IPv6 prefix length {len}: must be a multiple of 8 from 8 to 128")]
    V6Prefix { len: u8 },
    #[error("{what} must not be 0")]
    ZeroPort { what: &'static str },
    #[error("{what} {addr} is not a usable unicast address")]
    Address { what: &'static str, addr: IpAddr },
    #[error("chain {name} is not named after bottle {id} (b{id}_*)")]
    ForeignChain { name: String, id: u32 },
    #[error("the marks are not distinct nonzero values inside their mask: {marks:x?}")]
    Marks { marks: Marks },
}

impl VmRules {
    /// Checks the values a kernel would otherwise refuse late, or accept and misapply.
    pub fn validate(&self) -> Result<(), PlanError> {
        let ifname_err = |why| PlanError::Ifname {
            name: self.ifname.clone(),
            why,
        };
        if self.ifname.is_empty() || self.ifname.len() > 15 {
            return Err(ifname_err("must be 1 to 15 bytes (IFNAMSIZ)"));
        }
        if self
            .ifname
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
        {
            return Err(ifname_err("contains NUL, '/' or whitespace"));
        }
        if self.guest_mac[0] & 1 == 1 || self.guest_mac == [0; 6] {
            return Err(PlanError::Mac {
                mac: self.guest_mac,
            });
        }
        if self.guest_v6_prefix == 0
            || self.guest_v6_prefix > 128
            || !self.guest_v6_prefix.is_multiple_of(8)
        {
            return Err(PlanError::V6Prefix {
                len: self.guest_v6_prefix,
            });
        }
        if self.dns_port == 0 {
            return Err(PlanError::ZeroPort { what: "dns_port" });
        }
        if self.host_ports.contains(&0) {
            return Err(PlanError::ZeroPort {
                what: "a host port",
            });
        }
        let addrs = [
            ("guest_v4", IpAddr::V4(self.guest_v4)),
            ("gateway_v4", IpAddr::V4(self.gateway_v4)),
            ("guest_v6", IpAddr::V6(self.guest_v6)),
            ("gateway_v6", IpAddr::V6(self.gateway_v6)),
        ];
        for (what, addr) in addrs {
            if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
                return Err(PlanError::Address { what, addr });
            }
        }
        if let Some(ll) = self.gateway_v6_ll
            && !ll.is_unicast_link_local()
        {
            return Err(PlanError::Address {
                what: "gateway_v6_ll (must be link-local)",
                addr: IpAddr::V6(ll),
            });
        }
        if !self.marks.is_valid() {
            return Err(PlanError::Marks { marks: self.marks });
        }
        Ok(())
    }

    /// The bottle's chains and rules.
    pub fn plan(&self) -> Result<BottlePlan, PlanError> {
        self.validate()?;
        let chains = vec![
            self.chain(
                "guard",
                ChainType::Filter,
                Hook::Prerouting,
                -300,
                self.guard(),
            ),
            self.chain("pre", ChainType::Nat, Hook::Prerouting, -100, self.dstnat()),
            self.chain("in", ChainType::Filter, Hook::Input, 0, self.input()),
            self.chain("fwd", ChainType::Filter, Hook::Forward, 0, self.forward()),
            self.chain(
                "post",
                ChainType::Nat,
                Hook::Postrouting,
                100,
                self.srcnat(),
            ),
        ];
        Ok(BottlePlan {
            id: self.id,
            chains,
        })
    }

    fn chain(
        &self,
        suffix: &str,
        chain_type: ChainType,
        hook: Hook,
        priority: i32,
        rules: Vec<RulePlan>,
    ) -> ChainPlan {
        ChainPlan {
            name: format!("{}{suffix}", chain_prefix(self.id)),
            chain_type,
            hook,
            priority,
            rules,
        }
    }

    fn tap_ingress(&self) -> Match {
        Match::IifName(Cmp::Eq, self.ifname.clone())
    }

    fn skip_other_interfaces(&self) -> RulePlan {
        RulePlan::new(
            vec![Match::IifName(Cmp::Neq, self.ifname.clone())],
            Action::Return,
        )
    }

    fn mark(&self, value: u32) -> Match {
        Match::Mark {
            mask: self.marks.mask,
            value,
        }
    }

    fn gateways(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.gateway_v4), IpAddr::V6(self.gateway_v6)]
    }

    /// Anti-spoofing: what may come from the tap at all. The guest's MAC and one of its
    /// addresses, or the few link-local exchanges that happen before it has one.
    fn guard(&self) -> Vec<RulePlan> {
        let mac = Match::EtherSaddr(self.guest_mac);
        let guest_v6 = mask_v6(self.guest_v6, self.guest_v6_prefix);
        let ret = |m: Vec<Match>| RulePlan::new(m, Action::Return);
        let mut rules = vec![
            self.skip_other_interfaces(),
            ret(vec![
                mac.clone(),
                Match::NfProto(Family::Ipv4),
                Match::Ip4Saddr(self.guest_v4),
            ]),
            // DHCP before the guest has its lease: 0.0.0.0:68 -> 255.255.255.255:67.
            ret(vec![
                mac.clone(),
                Match::NfProto(Family::Ipv4),
                Match::L4Proto(L4::Udp),
                Match::Ip4Saddr(Ipv4Addr::UNSPECIFIED),
                Match::Ip4Daddr(Cmp::Eq, Ipv4Addr::BROADCAST),
                Match::Sport(L4::Udp, 68),
                Match::Dport(L4::Udp, 67),
            ]),
            ret(vec![
                mac.clone(),
                Match::NfProto(Family::Ipv6),
                Match::Ip6Saddr(guest_v6, self.guest_v6_prefix),
            ]),
            // NDP and router solicitations from the link-local address (the kernel never
            // forwards link-local sources; the input chain admits only NDP types).
            ret(vec![
                mac.clone(),
                Match::NfProto(Family::Ipv6),
                Match::L4Proto(L4::Icmpv6),
                Match::Ip6Saddr(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 64),
            ]),
            // Duplicate address detection and MLD reports before an address is valid.
            ret(vec![
                mac.clone(),
                Match::NfProto(Family::Ipv6),
                Match::L4Proto(L4::Icmpv6),
                Match::Ip6Saddr(Ipv6Addr::UNSPECIFIED, 128),
            ]),
        ];
        // From the link-local address to the router's: the host on the link (the input
        // chain admits only host ports there); link-local sources are never forwarded.
        if let Some(ll) = self.gateway_v6_ll {
            rules.push(ret(vec![
                mac,
                Match::NfProto(Family::Ipv6),
                Match::Ip6Saddr(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 64),
                Match::Ip6Daddr(Cmp::Eq, ll),
            ]));
        }
        rules.push(RulePlan::new(vec![], Action::Drop));
        rules
    }

    /// DNS to any address lands on the bottle's DNS proxy; inspected TCP on its
    /// inspecting proxy (which asks conntrack for the original destination).
    fn dstnat(&self) -> Vec<RulePlan> {
        let mut rules = vec![self.skip_other_interfaces()];
        for gw in self.gateways() {
            for l4 in [L4::Udp, L4::Tcp] {
                rules.push(RulePlan::new(
                    vec![
                        self.mark(self.marks.dns),
                        Match::NfProto(crate::plan::family_of(gw)),
                        Match::L4Proto(l4),
                        Match::Dport(l4, DNS_PORT),
                    ],
                    Action::Dnat(SocketAddr::new(gw, self.dns_port)),
                ));
            }
        }
        for gw in self.gateways().into_iter().filter(|_| self.proxy_port != 0) {
            rules.push(RulePlan::new(
                vec![
                    self.mark(self.marks.inspect),
                    Match::NfProto(crate::plan::family_of(gw)),
                    Match::L4Proto(L4::Tcp),
                ],
                Action::Dnat(SocketAddr::new(gw, self.proxy_port)),
            ));
        }
        rules
    }

    /// What the guest may send to the host itself.
    fn input(&self) -> Vec<RulePlan> {
        let accept = |m: Vec<Match>| RulePlan::new(m, Action::Accept);
        let mut rules = vec![
            self.skip_other_interfaces(),
            accept(vec![Match::CtEstablishedRelated]),
        ];
        // DHCP to the server on the tap: broadcast before a lease, unicast to renew;
        // never to the host's other addresses.
        for to in [Ipv4Addr::BROADCAST, self.gateway_v4] {
            rules.push(accept(vec![
                Match::NfProto(Family::Ipv4),
                Match::Ip4Daddr(Cmp::Eq, to),
                Match::L4Proto(L4::Udp),
                Match::Sport(L4::Udp, 68),
                Match::Dport(L4::Udp, 67),
            ]));
        }
        // Router solicitation, neighbour solicitation and advertisement.
        for icmp_type in [133, 135, 136] {
            rules.push(accept(vec![
                Match::NfProto(Family::Ipv6),
                Match::L4Proto(L4::Icmpv6),
                Match::Icmpv6Type(icmp_type),
            ]));
        }
        let to_gateway = |gw: IpAddr, l4: L4, port: u16, mark: Vec<Match>| {
            let mut m = mark;
            m.push(Match::NfProto(crate::plan::family_of(gw)));
            m.push(match gw {
                IpAddr::V4(a) => Match::Ip4Daddr(Cmp::Eq, a),
                IpAddr::V6(a) => Match::Ip6Daddr(Cmp::Eq, a),
            });
            m.extend([Match::L4Proto(l4), Match::Dport(l4, port)]);
            accept(m)
        };
        let dnated = |value| vec![self.mark(value), Match::CtDnat];
        for gw in self.gateways() {
            for l4 in [L4::Udp, L4::Tcp] {
                rules.push(to_gateway(gw, l4, self.dns_port, dnated(self.marks.dns)));
            }
        }
        for gw in self.gateways().into_iter().filter(|_| self.proxy_port != 0) {
            rules.push(to_gateway(
                gw,
                L4::Tcp,
                self.proxy_port,
                dnated(self.marks.inspect),
            ));
        }
        let host_addrs: Vec<IpAddr> = self
            .gateways()
            .into_iter()
            .chain(self.gateway_v6_ll.map(IpAddr::V6))
            .collect();
        for &port in &self.host_ports {
            for &gw in &host_addrs {
                for l4 in [L4::Tcp, L4::Udp] {
                    let mark = vec![self.mark(self.marks.host_port)];
                    rules.push(to_gateway(gw, l4, port, mark));
                }
            }
        }
        rules.push(RulePlan::new(vec![], Action::Drop));
        rules
    }

    /// The second line behind the tc program for forwarded traffic.
    fn forward(&self) -> Vec<RulePlan> {
        let to_tap = Match::OifName(Cmp::Eq, self.ifname.clone());
        vec![
            RulePlan::new(
                vec![self.tap_ingress(), self.mark(self.marks.direct)],
                Action::Accept,
            ),
            RulePlan::new(vec![self.tap_ingress()], Action::Drop),
            RulePlan::new(
                vec![to_tap.clone(), Match::CtEstablishedRelated],
                Action::Accept,
            ),
            RulePlan::new(vec![to_tap], Action::Drop),
        ]
    }

    /// The guest's traffic leaves with the host's address (both families).
    fn srcnat(&self) -> Vec<RulePlan> {
        vec![RulePlan::new(
            vec![
                self.tap_ingress(),
                Match::OifName(Cmp::Neq, self.ifname.clone()),
            ],
            Action::Masquerade,
        )]
    }
}

/// `addr` with every bit past `len` cleared.
fn mask_v6(addr: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(addr);
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    Ipv6Addr::from(bits & mask)
}

#[cfg(test)]
mod tests;
