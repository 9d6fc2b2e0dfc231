//! What the agent holds for a VM bottle beside what every bottle has: the guest's
//! addressing from the host's pools ([`addressing`]), forwarding turned on without breaking
//! the host ([`forwarding`]), the host routes those pools must not
//! collide with ([`routes`]), the tap's addresses ([`link`]), and [`fence`]: the tap with its
//! tc program and nftables chains, verified, built on all of these.

pub mod addressing;
pub mod fence;
pub mod forwarding;
pub mod link;
pub mod original_dst;
pub mod routes;
mod runtime;

// The tap program's marks (C) and the nftables rules' marks (Rust) are one set of numbers.
const _: () = {
    use cork_bpf::abi::cork_mark;
    assert!(cork_nft::MARK_MASK == cork_mark::CORK_MARK_MASK);
    assert!(cork_nft::MARK_DNS == cork_mark::CORK_MARK_DNS);
    assert!(cork_nft::MARK_INSPECT == cork_mark::CORK_MARK_INSPECT);
    assert!(cork_nft::MARK_HOST_PORT == cork_mark::CORK_MARK_HOST);
    assert!(cork_nft::MARK_DIRECT == cork_mark::CORK_MARK_DIRECT);
};

pub use addressing::{AddressingError, GuestAddressing, Pools};
pub use fence::{TapFence, TapLink, VmError, VmTeardownProblem};
pub use forwarding::{ForwardingError, ForwardingLease};
pub use original_dst::ConntrackRedirects;
pub use routes::{HostRoute, RouteError, overlapping_routes};
