//! [`GuestNetConfig`]: what one guest is told about its network, and the checks that make
//! it coherent before any socket exists (a guest given a gateway outside its own subnet,
//! or an MTU below IPv6's minimum, would fail in ways that are hard to see from the host).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::mac::MacAddr;

/// A DHCP lease of one hour: long enough that a slow (TCG) guest never races a renewal,
/// short enough that a changed configuration reaches a long-running guest.
pub const DEFAULT_LEASE_SECS: u32 = 3600;
/// How often an unsolicited router advertisement is sent (RFC 4861 MaxRtrAdvInterval).
pub const DEFAULT_RA_INTERVAL: Duration = Duration::from_secs(15);
/// At most this many DNS servers per family (a guest resolver uses the first three).
pub const MAX_DNS_SERVERS: usize = 8;

/// One guest's network: everything the DHCP server and the router advertisements say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNetConfig {
    /// The guest NIC's MAC: the only client served (any other `chaddr` is ignored).
    pub guest_mac: MacAddr,
    /// The one address every DHCP offer and ack gives.
    pub guest_v4: Ipv4Addr,
    /// The IPv4 subnet's prefix length (8..=30), shared by guest and gateway.
    pub prefix_len_v4: u8,
    /// The router (option 3) and DHCP server identifier (option 54): the host end of the
    /// tap, which must carry this address.
    pub gateway_v4: Ipv4Addr,
    /// DNS servers given by DHCP (option 6), in order; may be empty.
    pub dns_v4: Vec<Ipv4Addr>,
    /// DNS servers announced by RDNSS (RFC 8106), in order; empty means no RDNSS option.
    pub dns_v6: Vec<Ipv6Addr>,
    /// The guest's /64 (network address, low 64 bits zero), announced on-link and
    /// autonomous so the guest forms its address with SLAAC.
    pub prefix_v6: Ipv6Addr,
    /// The link MTU given by DHCP (option 26) and the RA MTU option (1280..=65535).
    pub mtu: u16,
    /// The DHCP lease time in seconds (at least 60; `u32::MAX` means infinite).
    pub lease_secs: u32,
    /// The interval between unsolicited router advertisements (4 s ..= 600 s).
    pub ra_interval: Duration,
}

/// Why a [`GuestNetConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("guest MAC {mac} is not a unicast NIC address")]
    GuestMac { mac: MacAddr },
    #[error(
        "IPv4 prefix length /{len} is outside 8..=30 (a /31 or /32 leaves no room for guest and gateway)"
    )]
    PrefixLenV4 { len: u8 },
    #[error("guest {guest} and gateway {gateway} are not in the same /{len}")]
    NotSameSubnet {
        guest: Ipv4Addr,
        gateway: Ipv4Addr,
        len: u8,
    },
    #[error("guest and gateway are both {addr}")]
    GuestIsGateway { addr: Ipv4Addr },
    #[error("{role} address {addr} is the network or broadcast address of its /{len}")]
    NotAHostAddress {
        role: &'static str,
        addr: Ipv4Addr,
        len: u8,
    },
    #[error(
        "IPv6 prefix {prefix} is not a global /64 network address (low 64 bits must be zero, not link-local or multicast)"
    )]
    PrefixV6 { prefix: Ipv6Addr },
    #[error("MTU {mtu} is below IPv6's minimum of 1280")]
    Mtu { mtu: u16 },
    #[error("lease time {secs} s is below 60 s")]
    Lease { secs: u32 },
    #[error("router advertisement interval {interval:?} is outside 4 s ..= 600 s")]
    RaInterval { interval: Duration },
    #[error("{count} {family} DNS servers given, at most {MAX_DNS_SERVERS} are announced")]
    TooManyDns { family: &'static str, count: usize },
    #[error("IPv6 DNS server {addr} is not a unicast address")]
    DnsV6 { addr: Ipv6Addr },
}

impl GuestNetConfig {
    /// The IPv4 subnet mask, as DHCP option 1 carries it.
    pub fn mask_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix_len_v4))
    }

    /// The IPv4 subnet's broadcast address (DHCP option 28).
    pub fn broadcast_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.guest_v4) | !mask_bits(self.prefix_len_v4))
    }

    /// Checks that the configuration describes one coherent guest link.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.guest_mac.is_unicast() {
            return Err(ConfigError::GuestMac {
                mac: self.guest_mac,
            });
        }
        let len = self.prefix_len_v4;
        if !(8..=30).contains(&len) {
            return Err(ConfigError::PrefixLenV4 { len });
        }
        let mask = mask_bits(len);
        let (guest, gateway) = (u32::from(self.guest_v4), u32::from(self.gateway_v4));
        if guest & mask != gateway & mask {
            return Err(ConfigError::NotSameSubnet {
                guest: self.guest_v4,
                gateway: self.gateway_v4,
                len,
            });
        }
        if guest == gateway {
            return Err(ConfigError::GuestIsGateway {
                addr: self.guest_v4,
            });
        }
        for (role, addr) in [("guest", self.guest_v4), ("gateway", self.gateway_v4)] {
            let host = u32::from(addr) & !mask;
            if host == 0 || host == !mask {
                return Err(ConfigError::NotAHostAddress { role, addr, len });
            }
        }
        let p = self.prefix_v6.segments();
        if p[4..] != [0, 0, 0, 0] || p[0] & 0xffc0 == 0xfe80 || p[0] >> 8 == 0xff || p[0] == 0 {
            return Err(ConfigError::PrefixV6 {
                prefix: self.prefix_v6,
            });
        }
        if self.mtu < 1280 {
            return Err(ConfigError::Mtu { mtu: self.mtu });
        }
        if self.lease_secs < 60 {
            return Err(ConfigError::Lease {
                secs: self.lease_secs,
            });
        }
        let interval = self.ra_interval;
        if interval < Duration::from_secs(4) || interval > Duration::from_secs(600) {
            return Err(ConfigError::RaInterval { interval });
        }
        for (family, count) in [("IPv4", self.dns_v4.len()), ("IPv6", self.dns_v6.len())] {
            if count > MAX_DNS_SERVERS {
                return Err(ConfigError::TooManyDns { family, count });
            }
        }
        if let Some(&addr) = self
            .dns_v6
            .iter()
            .find(|a| a.is_unspecified() || a.is_multicast() || a.is_loopback())
        {
            return Err(ConfigError::DnsV6 { addr });
        }
        Ok(())
    }
}

fn mask_bits(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The configuration the tests use: guest .130, gateway .129 in 198.51.100.128/26.
    pub(crate) fn sample() -> GuestNetConfig {
        GuestNetConfig {
            guest_mac: MacAddr([0x02, 0, 0, 0, 0, 0x0a]),
            guest_v4: Ipv4Addr::new(198, 51, 100, 130),
            prefix_len_v4: 26,
            gateway_v4: Ipv4Addr::new(198, 51, 100, 129),
            dns_v4: vec![Ipv4Addr::new(198, 51, 100, 129)],
            dns_v6: vec!["2001:db8:100:1::1".parse().expect("literal")],
            prefix_v6: "2001:db8:100:1::".parse().expect("literal"),
            mtu: 1400,
            lease_secs: DEFAULT_LEASE_SECS,
            ra_interval: DEFAULT_RA_INTERVAL,
        }
    }

    #[test]
    fn sample_is_valid_and_derives_mask_and_broadcast() {
        let c = sample();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.mask_v4(), Ipv4Addr::new(255, 255, 255, 192));
        assert_eq!(c.broadcast_v4(), Ipv4Addr::new(198, 51, 100, 191));
    }

    #[test]
    fn incoherent_configs_are_refused_by_name() {
        type Mutation = fn(&mut GuestNetConfig);
        let cases: Vec<(Mutation, &str)> = vec![
            (
                |c| c.guest_mac = MacAddr([0x01, 0, 0, 0, 0, 1]),
                "not a unicast",
            ),
            (|c| c.prefix_len_v4 = 31, "/31"),
            (
                |c| c.gateway_v4 = Ipv4Addr::new(198, 51, 100, 1),
                "not in the same /26",
            ),
            (|c| c.gateway_v4 = c.guest_v4, "both"),
            (
                |c| c.guest_v4 = Ipv4Addr::new(198, 51, 100, 191),
                "broadcast",
            ),
            (
                |c| c.prefix_v6 = "2001:db8:100:1::5".parse().expect("literal"),
                "low 64 bits",
            ),
            (
                |c| c.prefix_v6 = "fe80::".parse().expect("literal"),
                "link-local",
            ),
            (|c| c.mtu = 1000, "1280"),
            (|c| c.lease_secs = 5, "below 60"),
            (|c| c.ra_interval = Duration::from_secs(1), "interval"),
            (
                |c| c.dns_v4 = vec![Ipv4Addr::new(198, 51, 100, 129); 9],
                "at most",
            ),
            (|c| c.dns_v6 = vec![Ipv6Addr::UNSPECIFIED], "not a unicast"),
        ];
        for (mutate, needle) in cases {
            let mut c = sample();
            mutate(&mut c);
            let err = c.validate().expect_err("incoherent config accepted");
            assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
        }
    }
}
