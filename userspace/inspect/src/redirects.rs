//! Where a redirected connection was going. For a cgroup bottle the kernel records it when
//! it redirects a connect to the proxy (the bottle's `cork_redirects` map); for a VM
//! bottle nftables DNATed the guest's packets, so conntrack knows it (`SO_ORIGINAL_DST`).
//! The agent hands the proxy a [`Redirects`] that asks the right one, so this crate needs
//! no kernel code of its own.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

/// Where a redirected connection was going, as the kernel recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original {
    pub dst: SocketAddr,
    /// The manifest rule that allowed the connect (index into `Policy::rules`).
    pub rule_id: cork_policy::RuleId,
    /// The process that called connect(); `None` for a VM guest (no process of ours).
    pub pid: Option<u32>,
    pub sock_cookie: u64,
}

/// The kernel's record of the bottle's redirected connections.
pub trait Redirects: Send + Sync {
    /// Removes and returns the record for the accepted connection `conn` whose client is
    /// `peer`. `None` when the bottle's kernel state never redirected such a connection:
    /// then the peer is not the bottle (or the entry was evicted) and it is refused.
    fn take(&self, peer: SocketAddr, conn: BorrowedFd<'_>) -> Option<Original>;
}
