//! The host end of a VM bottle's tap as an IP link: the gateway addresses cork gives it
//! (the `SIOCSIFADDR` family of ioctls: no netlink dependency for two addresses), and its
//! link-local address, which the tap program must know (it is the router the guest's
//! RAs name, and the guest may reach it for NDP).
//!
//! The tap's `accept_dad = 0` (see `cork_guestnet::prepare_tap_sysctls`) is what makes
//! these addresses usable at once: the proxies bind them right after.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long the kernel may take to give the tap its link-local address after link-up.
const LINK_LOCAL_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{op} on {ifname}")]
    Ioctl {
        ifname: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("reading /proc/net/if_inet6")]
    IfInet6(#[source] io::Error),
    #[error(
        "{ifname} has no usable IPv6 link-local address after {LINK_LOCAL_WAIT:?} (is IPv6 \
         disabled on the host?)"
    )]
    NoLinkLocal { ifname: String },
    #[error("{addr} on {ifname} is still not usable after {LINK_LOCAL_WAIT:?}")]
    NotUsable { ifname: String, addr: Ipv6Addr },
}

fn socket(family: libc::c_int, ifname: &str, op: &'static str) -> Result<OwnedFd, LinkError> {
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(LinkError::Ioctl {
            ifname: ifname.to_owned(),
            op,
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: socket(2) returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_v4(ifname: &str, addr: Ipv4Addr) -> libc::ifreq {
    // SAFETY: ifreq is plain data (a name and a union of plain data): all zeroes is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes().take(15)) {
        *dst = src as libc::c_char;
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in (16 bytes) fits the union's sockaddr member (16 bytes); both are
    // plain data, so writing one through the other's storage is a byte copy.
    unsafe {
        std::ptr::write(
            (&raw mut req.ifr_ifru.ifru_addr).cast::<libc::sockaddr_in>(),
            sin,
        );
    }
    req
}

fn ioctl_v4(
    sock: &OwnedFd,
    ifname: &str,
    request: libc::Ioctl,
    op: &'static str,
    addr: Ipv4Addr,
) -> Result<(), LinkError> {
    let mut req = ifreq_v4(ifname, addr);
    // SAFETY: `req` is a valid `struct ifreq` naming the interface and holding an
    // AF_INET address; it lives across the call, which reads it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req as *mut libc::ifreq) } < 0 {
        return Err(LinkError::Ioctl {
            ifname: ifname.to_owned(),
            op,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Gives `ifname` the IPv4 address `addr/len` (its connected route with it).
pub fn add_v4(ifname: &str, addr: Ipv4Addr, len: u8) -> Result<(), LinkError> {
    let sock = socket(libc::AF_INET, ifname, "socket(AF_INET)")?;
    ioctl_v4(&sock, ifname, libc::SIOCSIFADDR, "SIOCSIFADDR", addr)?;
    let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0));
    ioctl_v4(&sock, ifname, libc::SIOCSIFNETMASK, "SIOCSIFNETMASK", mask)
}

/// Gives `ifname` the IPv6 address `addr/len`.
pub fn add_v6(ifname: &str, ifindex: u32, addr: Ipv6Addr, len: u8) -> Result<(), LinkError> {
    let sock = socket(libc::AF_INET6, ifname, "socket(AF_INET6)")?;
    let mut req = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr {
            s6_addr: addr.octets(),
        },
        ifr6_prefixlen: u32::from(len),
        ifr6_ifindex: ifindex as libc::c_int,
    };
    // SAFETY: `req` is a valid `struct in6_ifreq`, alive across the call, which reads it.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFADDR,
            &mut req as *mut libc::in6_ifreq,
        )
    } < 0
    {
        return Err(LinkError::Ioctl {
            ifname: ifname.to_owned(),
            op: "SIOCSIFADDR (IPv6)",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// IFA_F_TENTATIVE | IFA_F_DADFAILED: an address not usable (yet).
const UNUSABLE: u32 = 0x40 | 0x08;

/// The usable (not tentative, DAD not failed) addresses of `ifname` in
/// `/proc/net/if_inet6` text.
pub fn usable_addresses(text: &str, ifname: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [addr, _index, _len, _scope, flags, name] = f.as_slice() else {
                return None;
            };
            let usable = u32::from_str_radix(flags, 16).ok()? & UNUSABLE == 0;
            let ip = Ipv6Addr::from(u128::from_str_radix(addr, 16).ok()?);
            (*name == ifname && usable).then_some(ip)
        })
        .collect()
}

/// Waits (bounded) until `ifname` has a usable address `want` picks, and returns it. Even
/// with `accept_dad = 0` a new IPv6 address is tentative until the kernel's address
/// work runs (a moment after it was added, or after link-up for the link-local one),
/// and binding a tentative address fails.
fn wait_for(
    ifname: &str,
    want: impl Fn(&[Ipv6Addr]) -> Option<Ipv6Addr>,
) -> Result<Option<Ipv6Addr>, LinkError> {
    let deadline = Instant::now() + LINK_LOCAL_WAIT;
    loop {
        let text = std::fs::read_to_string("/proc/net/if_inet6").map_err(LinkError::IfInet6)?;
        if let Some(ip) = want(&usable_addresses(&text, ifname)) {
            return Ok(Some(ip));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) for `ifname`'s link-local address, which the kernel adds at link-up.
pub fn link_local(ifname: &str) -> Result<Ipv6Addr, LinkError> {
    wait_for(ifname, |usable| {
        usable.iter().copied().find(Ipv6Addr::is_unicast_link_local)
    })?
    .ok_or_else(|| LinkError::NoLinkLocal {
        ifname: ifname.to_owned(),
    })
}

/// Waits (bounded) until `addr` on `ifname` is usable (bindable).
pub fn wait_usable(ifname: &str, addr: Ipv6Addr) -> Result<(), LinkError> {
    wait_for(ifname, |usable| usable.contains(&addr).then_some(addr))?
        .map(drop)
        .ok_or_else(|| LinkError::NotUsable {
            ifname: ifname.to_owned(),
            addr,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
20010db8010000000000000000000001 05 40 00 80     cork3
fe80000000000000a8bbccfffedd0001 05 40 20 c0     cork3
fe80000000000000a8bbccfffedd0002 06 40 20 80     cork4
fe80000000000000a8bbccfffedd0003 07 40 20 80     cork5
00000000000000000000000000000001 01 80 10 80       lo
";

    #[test]
    fn link_local_is_the_usable_scope_link_address_of_that_interface() {
        let link_local = |ifname| {
            usable_addresses(TEXT, ifname)
                .into_iter()
                .find(Ipv6Addr::is_unicast_link_local)
        };
        assert_eq!(
            link_local("cork4"),
            Some("fe80::a8bb:ccff:fedd:2".parse().expect("ip"))
        );
        // Tentative (0x40 in 0xc0): not yet.
        assert_eq!(link_local("cork3"), None);
        // A name that is a prefix of another interface's is not that interface.
        assert_eq!(link_local("cork"), None);
        assert_eq!(link_local("lo"), None);
    }

    #[test]
    fn usable_addresses_leave_tentative_ones_out() {
        let cork3 = usable_addresses(TEXT, "cork3");
        assert_eq!(
            cork3,
            ["2001:db8:100::1".parse::<Ipv6Addr>().expect("ip")],
            "the global one is usable, the tentative link-local is not"
        );
    }
}
