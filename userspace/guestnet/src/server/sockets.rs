//! The two sockets of a guest network service, both bound to the tap (SO_BINDTODEVICE) so
//! that several taps can each have their own server on port 67 and nothing is heard from
//! or sent to any other interface. Errors carry the step that failed.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt,
    socket, sockopt,
};

use crate::dhcp::SERVER_PORT;
use crate::ndp::TYPE_RS;

type StepResult<T> = Result<T, (&'static str, std::io::Error)>;

/// The all-routers group: where router solicitations go.
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// How long a tentative link-local address is waited for (DAD takes about a second).
const LINK_LOCAL_WAIT: Duration = Duration::from_secs(3);
/// `ICMPV6_FILTER` from linux/icmpv6.h (level SOL_ICMPV6); not in the libc crate.
const ICMPV6_FILTER: libc::c_int = 1;

/// `struct icmp6_filter`: a set bit *blocks* that ICMPv6 type.
#[repr(C)]
struct Icmp6Filter([u32; 8]);

fn step<T>(what: &'static str, r: nix::Result<T>) -> StepResult<T> {
    r.map_err(|e| (what, std::io::Error::from(e)))
}

/// UDP `0.0.0.0:67` on `ifname`, broadcast allowed (replies go to 255.255.255.255).
pub(super) fn dhcp_socket(ifname: &str) -> StepResult<std::net::UdpSocket> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = step(
        "create the DHCP socket",
        socket(AddressFamily::Inet, SockType::Datagram, flags, None),
    )?;
    step(
        "SO_BINDTODEVICE on the DHCP socket",
        setsockopt(&fd, sockopt::BindToDevice, &ifname.into()),
    )?;
    step(
        "SO_REUSEADDR on the DHCP socket",
        setsockopt(&fd, sockopt::ReuseAddr, &true),
    )?;
    step(
        "SO_BROADCAST on the DHCP socket",
        setsockopt(&fd, sockopt::Broadcast, &true),
    )?;
    let addr = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT));
    step(
        "bind UDP 0.0.0.0:67 (another DHCP server on all interfaces?)",
        bind(fd.as_raw_fd(), &addr),
    )?;
    Ok(std::net::UdpSocket::from(fd))
}

/// A raw ICMPv6 socket on `ifname` that hears only router solicitations (with their hop
/// limit) and sends from the tap's link-local address with hop limit 255, as RFC 4861
/// requires of router discovery in both directions.
pub(super) fn icmpv6_socket(ifname: &str, index: u32, link_local: Ipv6Addr) -> StepResult<OwnedFd> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = step(
        "create the raw ICMPv6 socket",
        socket(
            AddressFamily::Inet6,
            SockType::Raw,
            flags,
            SockProtocol::IcmpV6,
        ),
    )?;
    step(
        "SO_BINDTODEVICE on the ICMPv6 socket",
        setsockopt(&fd, sockopt::BindToDevice, &ifname.into()),
    )?;
    let mut filter = Icmp6Filter([u32::MAX; 8]);
    filter.0[usize::from(TYPE_RS >> 5)] &= !(1 << (TYPE_RS & 31));
    set_raw(&fd, libc::SOL_ICMPV6, ICMPV6_FILTER, &filter)
        .map_err(|e| ("ICMPV6_FILTER (router solicitations only)", e))?;
    step(
        "IPV6_RECVHOPLIMIT",
        setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true),
    )?;
    step(
        "IPV6_UNICAST_HOPS 255",
        setsockopt(&fd, sockopt::Ipv6Ttl, &255),
    )?;
    let hops: libc::c_int = 255;
    set_raw(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &hops)
        .map_err(|e| ("IPV6_MULTICAST_HOPS 255", e))?;
    let ifindex = index as libc::c_int;
    set_raw(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &ifindex)
        .map_err(|e| ("IPV6_MULTICAST_IF", e))?;
    let no_loop: libc::c_int = 0;
    set_raw(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &no_loop)
        .map_err(|e| ("IPV6_MULTICAST_LOOP 0", e))?;
    // Solicitations go to ff02::2, which a host interface joins only when it forwards.
    let join = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: ALL_ROUTERS.octets(),
        },
        ipv6mr_interface: index,
    };
    set_raw(&fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &join)
        .map_err(|e| ("join ff02::2 (all routers)", e))?;
    bind_link_local(&fd, link_local, index)?;
    Ok(fd)
}

/// Binds to the link-local address, so that every RA leaves from it (RFC 4861 4.2).
///
/// Right after link-up that address is tentative for a moment even without DAD (the
/// kernel completes it from a workqueue, addrconf_dad_work), and for about a second with
/// DAD; a tentative address cannot be bound (EADDRNOTAVAIL). So wait a bounded time.
fn bind_link_local(fd: &OwnedFd, link_local: Ipv6Addr, index: u32) -> StepResult<()> {
    let addr = SockaddrIn6::from(SocketAddrV6::new(link_local, 0, 0, index));
    let deadline = Instant::now() + LINK_LOCAL_WAIT;
    loop {
        match bind(fd.as_raw_fd(), &addr) {
            Ok(()) => return Ok(()),
            Err(Errno::EADDRNOTAVAIL) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err((
                    "bind the ICMPv6 socket to the tap's link-local address (still tentative? set accept_dad=0 before link-up)",
                    e.into(),
                ));
            }
        }
    }
}

/// setsockopt(2) for option types nix does not model.
fn set_raw<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` is a live, initialised `T` borrowed for the whole call and `len` is
    // exactly its size; the kernel only reads (copies) that many bytes from it.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
