//! What the agent holds for a VM bottle beside what every bottle has: the guest's
//! addressing from the host's pools ([`addressing`]), the host routes those pools must not
//! collide with ([`routes`]). The tap, its tc program and the nftables chains build on these.

pub mod addressing;
pub mod original_dst;
pub mod routes;

pub use addressing::{AddressingError, GuestAddressing, Pools};
pub use original_dst::ConntrackRedirects;
pub use routes::{HostRoute, RouteError, overlapping_routes};
