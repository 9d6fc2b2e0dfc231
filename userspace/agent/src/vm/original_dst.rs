//! Where a VM guest's connection was going, for the inspecting proxy: nftables DNATed the
//! guest's packets to the proxy, so conntrack holds the original destination, and
//! `getsockopt(SO_ORIGINAL_DST)` (IPv4, `IP6T_SO_ORIGINAL_DST` for IPv6; both option 80,
//! include/uapi/linux/netfilter_ipv4.h and netfilter_ipv6/ip6_tables.h) returns it for the
//! accepted socket. Only connections from the guest's own addresses are taken: anything
//! else reaching the proxy's port was not redirected for this bottle.

use std::mem::{MaybeUninit, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

use cork_inspect::{Original, Redirects};

use super::addressing::GuestAddressing;

/// `SO_ORIGINAL_DST` and `IP6T_SO_ORIGINAL_DST`.
const SO_ORIGINAL_DST: libc::c_int = 80;
/// The rule id of a flow whose rule the proxy finds by name (no kernel record carries it).
const RULE_NONE: cork_policy::RuleId = cork_policy::RULE_ID_NONE;

/// The original destinations of a VM bottle's proxied connections, from conntrack.
pub struct ConntrackRedirects {
    guest: GuestAddressing,
}

impl ConntrackRedirects {
    pub fn new(guest: GuestAddressing) -> Self {
        ConntrackRedirects { guest }
    }

    /// Is `peer` the guest (its IPv4 address, or an address in its /64)?
    fn is_guest(&self, peer: IpAddr) -> bool {
        match peer {
            IpAddr::V4(a) => a == self.guest.guest4,
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => v4 == self.guest.guest4,
                None => a.segments()[..4] == self.guest.prefix6.segments()[..4],
            },
        }
    }
}

impl Redirects for ConntrackRedirects {
    fn take(&self, peer: SocketAddr, conn: BorrowedFd<'_>) -> Option<Original> {
        if !self.is_guest(peer.ip()) {
            return None;
        }
        let dst = original_dst(
            conn,
            peer.is_ipv4() || matches!(peer.ip(), IpAddr::V6(a) if a.to_ipv4_mapped().is_some()),
        )?;
        Some(Original {
            dst,
            rule_id: RULE_NONE,
            pid: None,
            sock_cookie: 0,
        })
    }
}

/// The pre-DNAT destination of an accepted connection; `None` when conntrack has none (the
/// connection was not DNATed).
pub fn original_dst(conn: BorrowedFd<'_>, v4: bool) -> Option<SocketAddr> {
    if v4 {
        let mut sa = MaybeUninit::<libc::sockaddr_in>::zeroed();
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `sa` is a writable sockaddr_in of `len` bytes; the kernel writes at most
        // `len` bytes and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                conn.as_raw_fd(),
                libc::SOL_IP,
                SO_ORIGINAL_DST,
                sa.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: the call succeeded, so the kernel filled the sockaddr_in.
        let sa = unsafe { sa.assume_init() };
        let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sa.sin_port)))
    } else {
        let mut sa = MaybeUninit::<libc::sockaddr_in6>::zeroed();
        let mut len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: as above, for a sockaddr_in6.
        let rc = unsafe {
            libc::getsockopt(
                conn.as_raw_fd(),
                libc::SOL_IPV6,
                SO_ORIGINAL_DST,
                sa.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: the call succeeded, so the kernel filled the sockaddr_in6.
        let sa = unsafe { sa.assume_init() };
        let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
        Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sa.sin6_port)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::BottleId;
    use crate::vm::addressing::Pools;

    #[test]
    fn only_the_guest_is_taken() {
        let pools = Pools::new(
            "198.51.100.128/26".parse().expect("v4"),
            "2001:db8:100::/56".parse().expect("v6"),
        )
        .expect("pools");
        let guest = GuestAddressing::for_bottle(&pools, BottleId::for_tests(1)).expect("guest");
        let r = ConntrackRedirects::new(guest);
        assert!(r.is_guest("198.51.100.130".parse().expect("ip")));
        assert!(r.is_guest("::ffff:198.51.100.130".parse().expect("ip")));
        assert!(r.is_guest("2001:db8:100::42".parse().expect("ip")));
        assert!(!r.is_guest("198.51.100.131".parse().expect("ip")));
        assert!(!r.is_guest("2001:db8:100:1::42".parse().expect("ip")));
        assert!(!r.is_guest("127.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn a_connection_that_was_not_dnated_has_no_original_destination() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        use std::os::fd::AsFd;
        // Without a NAT entry conntrack has nothing (or conntrack is not loaded): no
        // destination is made up.
        let got = original_dst(server.as_fd(), true);
        assert!(got.is_none() || got == Some(listener.local_addr().expect("addr")));
        drop(client);
    }
}
