//! Where a redirected connection was going. The kernel records it when it redirects a
//! bottle's connect to the proxy; the agent hands the proxy a [`Redirects`] that looks it
//! up (the bottle's `cork_redirects` map), so this crate needs no kernel code of its own.

use std::net::SocketAddr;

/// Where a redirected connection was going, as the kernel recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original {
    pub dst: SocketAddr,
    /// The manifest rule that allowed the connect (index into `Policy::rules`).
    pub rule_id: u16,
    /// The process that called connect().
    pub pid: u32,
    pub sock_cookie: u64,
}

/// The kernel's record of the bottle's redirected connections.
pub trait Redirects: Send + Sync {
    /// Removes and returns the record for a connection whose client is `peer`. `None`
    /// when the bottle's kernel programs never redirected such a connection: then the
    /// peer is not the bottle (or the entry was evicted) and the connection is refused.
    fn take(&self, peer: SocketAddr) -> Option<Original>;
}
