//! cork-guestnet: the network configuration a VM bottle's guest gets on its tap, the way
//! a stock image expects it — a DHCPv4 server (address, router, DNS, MTU, lease) and IPv6
//! router advertisements (SLAAC /64, RDNSS, MTU, router lifetime), answering router
//! solicitations too. Busybox `udhcpc`, the kernel's own SLAAC and systemd-networkd are
//! the clients it is written for.
//!
//! Layers, each usable alone:
//! - [`dhcp`] and [`ndp`]: pure packet code (parse, build, decide), property-tested.
//! - [`GuestNet::start`]: one server per tap, sockets bound to the interface, tasks on
//!   the caller's tokio runtime; [`RunningGuestNet`] stops them on `stop()` or drop.
//! - [`prepare_tap_sysctls`]: the per-interface sysctls the host end of the tap needs.
//!
//! Anti-spoofing here is limited to what a DHCP server can do: only the configured guest
//! MAC is answered, and always with the one configured address. Frames with a forged
//! source MAC or IP address are for the tap's packet filter to drop.

pub mod config;
pub mod dhcp;
pub mod mac;
pub mod ndp;
mod server;
mod sysctl;

pub use config::{ConfigError, GuestNetConfig};
pub use mac::MacAddr;
pub use server::{GuestNet, GuestNetError, GuestNetStats, RunningGuestNet};
pub use sysctl::{SysctlError, TAP_SYSCTLS, prepare_tap_sysctls};
