//! A VM bottle's addresses, derived from its bottle id and the host's pools: each guest
//! gets its own IPv4 /30 (network, gateway, guest, broadcast) and its own IPv6 /64 (the
//! gateway is `::1` in it; the guest forms its address by SLAAC), and a locally
//! administered MAC. Two live bottles never share an id, so they never share addresses.
//!
//! Defaults: `10.239.0.0/16` (16 384 guests) and `fd63:6f72:6b00::/48` (`6f72:6b` spells
//! "ork"; 65 536 guests) — private ranges a host is unlikely to route already; `cork vm`
//! refuses a pool that overlaps a route the host has (see [`super::routes`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cork_policy::Prefix;

use crate::key::BottleId;

/// Documented default pools (see the module docs).
pub const DEFAULT_POOL4: &str = "10.239.0.0/16";
pub const DEFAULT_POOL6: &str = "fd63:6f72:6b00::/48";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressingError {
    #[error("--pool4 {pool}: must be an IPv4 prefix of length /30 or shorter")]
    Pool4 { pool: String },
    #[error("--pool6 {pool}: must be an IPv6 prefix of length /64 or shorter")]
    Pool6 { pool: String },
    #[error("{pool} has room for {capacity} guests; bottle id {id} does not fit")]
    Exhausted {
        pool: String,
        capacity: u64,
        id: u32,
    },
}

/// The pools guests' addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pools {
    pub v4: Prefix,
    pub v6: Prefix,
}

impl Pools {
    /// Checks the prefix lengths (a /30 per guest, a /64 per guest).
    pub fn new(v4: Prefix, v6: Prefix) -> Result<Self, AddressingError> {
        if !v4.is_ipv4() || v4.len() > 30 {
            return Err(AddressingError::Pool4 {
                pool: v4.to_string(),
            });
        }
        if v6.is_ipv4() || v6.len() > 64 {
            return Err(AddressingError::Pool6 {
                pool: v6.to_string(),
            });
        }
        Ok(Pools { v4, v6 })
    }

    /// The documented defaults.
    pub fn defaults() -> Result<Self, AddressingError> {
        let v4 = DEFAULT_POOL4.parse().map_err(|_| AddressingError::Pool4 {
            pool: DEFAULT_POOL4.into(),
        })?;
        let v6 = DEFAULT_POOL6.parse().map_err(|_| AddressingError::Pool6 {
            pool: DEFAULT_POOL6.into(),
        })?;
        Pools::new(v4, v6)
    }
}

/// One guest's addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestAddressing {
    pub mac: [u8; 6],
    /// The guest's IPv4 /30.
    pub subnet4: Ipv4Addr,
    pub gateway4: Ipv4Addr,
    pub guest4: Ipv4Addr,
    /// The guest's IPv6 /64 (SLAAC), the gateway's address in it (router, RDNSS).
    pub prefix6: Ipv6Addr,
    pub gateway6: Ipv6Addr,
}

impl GuestAddressing {
    /// The addressing of bottle `id` (ids start at 1: the first guest takes the first
    /// /30 and the first /64 of the pools).
    pub fn for_bottle(pools: &Pools, id: BottleId) -> Result<Self, AddressingError> {
        let index = u64::from(id.get().saturating_sub(1));
        let exhausted = |pool: &Prefix, capacity: u64| AddressingError::Exhausted {
            pool: pool.to_string(),
            capacity,
            id: id.get(),
        };
        let cap4 = 1u64 << (30 - pools.v4.len());
        if index >= cap4 {
            return Err(exhausted(&pools.v4, cap4));
        }
        let cap6 = 1u64
            .checked_shl(u32::from(64 - pools.v6.len()))
            .unwrap_or(u64::MAX);
        if index >= cap6 {
            return Err(exhausted(&pools.v6, cap6));
        }
        let IpAddr::V4(base4) = pools.v4.addr() else {
            return Err(AddressingError::Pool4 {
                pool: pools.v4.to_string(),
            });
        };
        let IpAddr::V6(base6) = pools.v6.addr() else {
            return Err(AddressingError::Pool6 {
                pool: pools.v6.to_string(),
            });
        };
        // index < 2^28 here (a /30 per guest in at most a /2... of u32 space).
        let subnet4 = u32::from(base4) + ((index as u32) << 2);
        let prefix6 = u128::from(base6) + (u128::from(index) << 64);
        let n = id.get().to_be_bytes();
        Ok(GuestAddressing {
            // 02: locally administered, unicast; c0:4b: cork's; then the bottle id.
            mac: [0x02, 0xc0, 0x4b, n[1], n[2], n[3]],
            subnet4: Ipv4Addr::from(subnet4),
            gateway4: Ipv4Addr::from(subnet4 + 1),
            guest4: Ipv4Addr::from(subnet4 + 2),
            prefix6: Ipv6Addr::from(prefix6),
            gateway6: Ipv6Addr::from(prefix6 + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> BottleId {
        BottleId::for_tests(n)
    }

    fn pools(v4: &str, v6: &str) -> Pools {
        Pools::new(v4.parse().expect("v4"), v6.parse().expect("v6")).expect("pools")
    }

    #[test]
    fn defaults_parse_and_are_valid_pools() {
        let d = Pools::defaults().expect("the defaults are valid pools");
        assert_eq!(d.v4.to_string(), DEFAULT_POOL4);
        assert_eq!(d.v6.to_string(), DEFAULT_POOL6);
        assert!(Pools::new(d.v4, d.v6).is_ok());
    }

    #[test]
    fn each_bottle_gets_its_own_30_and_64() {
        let p = pools("198.51.100.128/26", "2001:db8:100::/56");
        let a = GuestAddressing::for_bottle(&p, id(1)).expect("first");
        assert_eq!(a.gateway4, Ipv4Addr::new(198, 51, 100, 129));
        assert_eq!(a.guest4, Ipv4Addr::new(198, 51, 100, 130));
        assert_eq!(a.prefix6, "2001:db8:100::".parse::<Ipv6Addr>().expect("v6"));
        assert_eq!(
            a.gateway6,
            "2001:db8:100::1".parse::<Ipv6Addr>().expect("v6")
        );
        assert_eq!(a.mac, [0x02, 0xc0, 0x4b, 0, 0, 1]);
        let b = GuestAddressing::for_bottle(&p, id(2)).expect("second");
        assert_eq!(b.guest4, Ipv4Addr::new(198, 51, 100, 134));
        assert_eq!(
            b.prefix6,
            "2001:db8:100:1::".parse::<Ipv6Addr>().expect("v6")
        );
        assert_ne!(a.mac, b.mac);
        let last = GuestAddressing::for_bottle(&p, id(16)).expect("16th of a /26");
        assert_eq!(last.guest4, Ipv4Addr::new(198, 51, 100, 190));
        assert_eq!(
            GuestAddressing::for_bottle(&p, id(17)),
            Err(AddressingError::Exhausted {
                pool: "198.51.100.128/26".into(),
                capacity: 16,
                id: 17
            })
        );
    }

    #[test]
    fn pools_too_small_for_one_guest_are_refused() {
        let v6: Prefix = "2001:db8:100::/56".parse().expect("v6");
        let v4: Prefix = "198.51.100.128/31".parse().expect("v4");
        assert!(matches!(
            Pools::new(v4, v6),
            Err(AddressingError::Pool4 { .. })
        ));
        let v4: Prefix = "198.51.100.128/26".parse().expect("v4");
        let v6: Prefix = "2001:db8:100::/96".parse().expect("v6");
        assert!(matches!(
            Pools::new(v4, v6),
            Err(AddressingError::Pool6 { .. })
        ));
        assert!(matches!(
            Pools::new(v6, v4),
            Err(AddressingError::Pool4 { .. })
        ));
    }
}
