//! What the server reads from the tap itself: its index (for scope ids and multicast),
//! its MAC (the RA's source link-layer address) and its link-local address (the RA's
//! source, hence the guest's router).

use std::net::Ipv6Addr;

use super::GuestNetError;
use crate::mac::MacAddr;

pub(super) struct Link {
    pub index: u32,
    pub mac: MacAddr,
    pub link_local: Ipv6Addr,
}

/// Looks `ifname` up in the calling thread's network namespace.
pub(super) fn lookup(ifname: &str) -> Result<Link, GuestNetError> {
    let index =
        nix::net::if_::if_nametoindex(ifname).map_err(|source| GuestNetError::NoInterface {
            ifname: ifname.to_owned(),
            source,
        })?;
    let addrs = nix::ifaddrs::getifaddrs().map_err(|source| GuestNetError::ListAddresses {
        ifname: ifname.to_owned(),
        source,
    })?;
    let (mut mac, mut link_local) = (None, None);
    for entry in addrs.filter(|a| a.interface_name == ifname) {
        let Some(addr) = entry.address else { continue };
        if let Some(octets) = addr.as_link_addr().and_then(|l| l.addr()) {
            mac = Some(MacAddr(octets));
        }
        if let Some(ip) = addr.as_sockaddr_in6().map(|s| s.ip())
            && ip.is_unicast_link_local()
        {
            link_local.get_or_insert(ip);
        }
    }
    let mac = mac
        .filter(|m| m.is_unicast())
        .ok_or_else(|| GuestNetError::NoMac {
            ifname: ifname.to_owned(),
        })?;
    let link_local = link_local.ok_or_else(|| GuestNetError::NoLinkLocal {
        ifname: ifname.to_owned(),
    })?;
    Ok(Link {
        index,
        mac,
        link_local,
    })
}
