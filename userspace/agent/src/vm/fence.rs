//! [`TapFence`]: a VM bottle's kernel state, the counterpart of a cgroup bottle's
//! [`crate::bottle::Bottle`] — the tap cork created, the gateway addresses on it, IP
//! forwarding, the tc program on its ingress (the guest's egress) and the bottle's
//! nftables chains, each read back before the guest may boot.
//!
//! Set-up order (each step fails closed: nothing reaches the guest until all are done,
//! and the guest does not exist yet): pools checked against the host's routes → tap
//! created (owned by this process; QEMU inherits its fd later) with its sysctls →
//! gateway addresses → forwarding → tc program (verified) → nftables chains (read back).
//! Teardown runs the other way round once QEMU is gone; the tap goes with the last fd.

use std::net::Ipv6Addr;
use std::path::Path;

use cork_bpf::abi::cork_guest;
use cork_bpf::{AttachTarget, BpfError, Enforcement, LoadConstants, TeardownError};
use cork_guestnet::{GuestNetConfig, MacAddr};
use cork_kvm::{Tap, TapError};
use cork_nft::{BottlePlan, Marks, NftError, VmRules};
use cork_policy::{KernelPlan, Prefix};

use crate::key::{BottleId, BottleKey};
use crate::vm::link::{self, LinkError};
use crate::vm::{
    AddressingError, ForwardingError, ForwardingLease, GuestAddressing, HostRoute, Pools,
    RouteError, overlapping_routes,
};

/// The guest's IPv4 subnet is a /30: network, gateway, guest, broadcast.
pub const GUEST_PREFIX_V4: u8 = 30;
/// The guest's IPv6 subnet is a /64 (SLAAC).
pub const GUEST_PREFIX_V6: u8 = 64;
/// The MTU the guest is told (DHCP option 26, RA MTU option): the tap's own.
pub const GUEST_MTU: u16 = 1500;
/// cork's taps are named `cork<id>`.
pub const TAP_PREFIX: &str = "cork";

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Addressing(#[from] AddressingError),
    #[error(transparent)]
    Routes(#[from] RouteError),
    #[error(
        "the address pool {pool} overlaps routes this host has ({routes}): pick another \
         with --pool4/--pool6"
    )]
    PoolOverlap { pool: String, routes: String },
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error("preparing tap {ifname}")]
    Sysctls {
        ifname: String,
        #[source]
        source: cork_guestnet::SysctlError,
    },
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("turning on IP forwarding")]
    Forwarding(#[from] ForwardingError),
    #[error("enforcing the policy on tap {ifname}")]
    Bpf {
        ifname: String,
        #[source]
        source: Box<BpfError>,
    },
    #[error("installing the nftables chains of bottle {id}")]
    Nft {
        id: u32,
        #[source]
        source: NftError,
    },
    #[error("the bottle has been torn down")]
    Gone,
}

/// One thing a VM bottle's teardown could not do.
#[derive(Debug, thiserror::Error)]
pub enum VmTeardownProblem {
    #[error("removing the nftables chains of bottle {id}")]
    Nft {
        id: u32,
        #[source]
        source: NftError,
    },
    #[error(transparent)]
    Bpf(#[from] TeardownError),
}

/// The name of bottle `id`'s tap.
pub fn tap_name(id: BottleId) -> String {
    format!("{TAP_PREFIX}{}", id.get())
}

/// Is `dev` one of cork's taps (its routes are cork's own, not the host's)?
pub fn is_cork_tap(dev: &str) -> bool {
    dev.strip_prefix(TAP_PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuses a pool that a host route (other than a default route, or a route of another
/// cork tap) overlaps.
pub fn check_pool(pool: &Prefix) -> Result<(), VmError> {
    let clashing: Vec<HostRoute> = overlapping_routes(pool)?
        .into_iter()
        .filter(|r| !is_cork_tap(&r.dev))
        .collect();
    if clashing.is_empty() {
        return Ok(());
    }
    Err(VmError::PoolOverlap {
        pool: pool.to_string(),
        routes: clashing
            .iter()
            .map(|r| format!("{} dev {}", r.dst, r.dev))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The tap, its addresses and forwarding: what exists before the proxies bind the
/// gateway addresses and the programs are loaded.
pub struct TapLink {
    pub id: BottleId,
    pub tap: Tap,
    pub addressing: GuestAddressing,
    pub gateway_ll: Ipv6Addr,
    forwarding: ForwardingLease,
}

impl TapLink {
    /// Creates bottle `id`'s tap in the calling thread's network namespace, with the
    /// gateway addresses from `pools` on it, and turns on forwarding.
    pub fn create(pools: &Pools, id: BottleId) -> Result<Self, VmError> {
        let addressing = GuestAddressing::for_bottle(pools, id)?;
        check_pool(&pools.v4)?;
        check_pool(&pools.v6)?;
        let tap = Tap::create(&tap_name(id))?;
        let ifname = tap.name().to_owned();
        cork_guestnet::prepare_tap_sysctls(&ifname).map_err(|source| VmError::Sysctls {
            ifname: ifname.clone(),
            source,
        })?;
        tap.set_up()?;
        link::add_v4(&ifname, addressing.gateway4, GUEST_PREFIX_V4)?;
        link::add_v6(
            &ifname,
            tap.ifindex()?,
            addressing.gateway6,
            GUEST_PREFIX_V6,
        )?;
        let gateway_ll = link::link_local(&ifname)?;
        // The proxies bind it next.
        link::wait_usable(&ifname, addressing.gateway6)?;
        let forwarding = ForwardingLease::acquire()?;
        Ok(TapLink {
            id,
            tap,
            addressing,
            gateway_ll,
            forwarding,
        })
    }

    /// What the tap program knows about the guest.
    pub fn guest_constants(&self) -> cork_guest {
        let a = &self.addressing;
        cork_guest {
            mac: a.mac,
            v6_prefix_len: GUEST_PREFIX_V6,
            v4: a.guest4.octets(),
            gw4: a.gateway4.octets(),
            v6_prefix: a.prefix6.octets(),
            gw6: a.gateway6.octets(),
            gw6_ll: self.gateway_ll.octets(),
            ..Default::default()
        }
    }

    /// What the guest is told over DHCPv4 and router advertisements: the gateway is its
    /// router and its DNS server on both families.
    pub fn guestnet_config(&self) -> GuestNetConfig {
        let a = &self.addressing;
        GuestNetConfig {
            guest_mac: MacAddr(a.mac),
            guest_v4: a.guest4,
            prefix_len_v4: GUEST_PREFIX_V4,
            gateway_v4: a.gateway4,
            dns_v4: vec![a.gateway4],
            dns_v6: vec![a.gateway6],
            prefix_v6: a.prefix6,
            mtu: GUEST_MTU,
            lease_secs: cork_guestnet::config::DEFAULT_LEASE_SECS,
            ra_interval: cork_guestnet::config::DEFAULT_RA_INTERVAL,
        }
    }
}

/// A VM bottle's enforced tap.
pub struct TapFence {
    id: BottleId,
    link: Option<TapLink>,
    enforcement: Option<Enforcement>,
    nft: Option<BottlePlan>,
}

impl TapFence {
    /// Enforces `plan` on `link`'s tap (tc program, pins in `<bpffs>/<key>`) and installs
    /// the bottle's nftables chains, both read back. `consts.guest` is filled in here.
    pub fn create(
        key: &BottleKey,
        link: TapLink,
        mut consts: LoadConstants,
        bpffs: &Path,
        plan: &KernelPlan,
        host_ports: &[u16],
    ) -> Result<Self, VmError> {
        let id = link.id;
        let ifname = link.tap.name().to_owned();
        consts.guest = Some(link.guest_constants());
        let (dns_port, proxy_port) = (consts.dns_port, consts.proxy_port);
        let mut fence = TapFence {
            id,
            link: Some(link),
            enforcement: None,
            nft: None,
        };
        // From here on, an error drops `fence`, which removes what exists.
        let target = AttachTarget::TcIngress {
            ifname: ifname.clone(),
        };
        fence.enforcement = Some(
            Enforcement::install(consts, &target, &key.pin_dir(bpffs), plan).map_err(|source| {
                VmError::Bpf {
                    ifname: ifname.clone(),
                    source: Box::new(source),
                }
            })?,
        );
        let a = fence.addressing().ok_or(VmError::Gone)?;
        let rules = VmRules {
            id: id.get(),
            ifname,
            guest_mac: a.mac,
            guest_v4: a.guest4,
            gateway_v4: a.gateway4,
            guest_v6: a.prefix6,
            guest_v6_prefix: GUEST_PREFIX_V6,
            gateway_v6: a.gateway6,
            gateway_v6_ll: fence.link().map(|l| l.gateway_ll),
            dns_port,
            proxy_port,
            host_ports: host_ports.to_vec(),
            marks: Marks::CORK,
        };
        let nft_err = |source| VmError::Nft {
            id: id.get(),
            source,
        };
        // Recorded before the read-back so that a failed read-back still removes them.
        fence.nft = Some(cork_nft::apply(&rules).map_err(nft_err)?);
        fence.verify(plan, 0)?;
        Ok(fence)
    }

    pub fn tap(&self) -> Option<&Tap> {
        self.link.as_ref().map(|l| &l.tap)
    }

    pub fn link(&self) -> Option<&TapLink> {
        self.link.as_ref()
    }

    pub fn addressing(&self) -> Option<GuestAddressing> {
        self.link.as_ref().map(|l| l.addressing)
    }

    pub fn enforcement(&mut self) -> Option<&mut Enforcement> {
        self.enforcement.as_mut()
    }

    /// Reads back the tc program and the maps against `plan`, and the nftables chains
    /// against what was installed.
    pub fn verify(&self, plan: &KernelPlan, slot: cork_policy::PolicySlot) -> Result<(), VmError> {
        let (Some(link), Some(enf), Some(nft)) = (&self.link, &self.enforcement, &self.nft) else {
            return Err(VmError::Gone);
        };
        let ifname = link.tap.name().to_owned();
        enf.verify(
            &AttachTarget::TcIngress {
                ifname: ifname.clone(),
            },
            plan,
            slot,
        )
        .map_err(|source| VmError::Bpf {
            ifname,
            source: Box::new(source),
        })?;
        cork_nft::read_back(nft).map_err(|source| VmError::Nft {
            id: self.id.get(),
            source,
        })
    }

    /// Removes the chains, the program and the tap (QEMU must be gone: the tap lives as
    /// long as any process holds its fd), then lets go of forwarding.
    pub fn teardown(&mut self) -> Vec<VmTeardownProblem> {
        let mut problems = Vec::new();
        if self.nft.take().is_some()
            && let Err(source) = cork_nft::remove(self.id.get())
        {
            problems.push(VmTeardownProblem::Nft {
                id: self.id.get(),
                source,
            });
        }
        if let Some(enf) = self.enforcement.take() {
            problems.extend(enf.remove().into_iter().map(VmTeardownProblem::Bpf));
        }
        if let Some(link) = self.link.take() {
            let TapLink {
                tap, forwarding, ..
            } = link;
            drop(tap);
            drop(forwarding);
        }
        problems
    }
}

impl Drop for TapFence {
    fn drop(&mut self) {
        for p in self.teardown() {
            tracing::warn!("VM bottle teardown: {}", cork_audit::error_chain(&p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cork_taps_are_recognised_by_name() {
        assert!(is_cork_tap("cork1"));
        assert!(is_cork_tap("cork4242"));
        assert!(!is_cork_tap("cork"));
        assert!(!is_cork_tap("corkx1"));
        assert!(!is_cork_tap("eth0"));
        assert_eq!(tap_name(BottleId::for_tests(7)), "cork7");
    }
}
