//! The test world for cork's root-only end-to-end tests.
//!
//! Each test builds one [`World`]: two network namespaces (the **bottle** side, where
//! `cork run` and the bottle's processes run, and the **internet**), joined by a veth,
//! with servers that record what they saw and helpers to run cork and real clients.
//! Everything a test starts lives in namespaces the test created; the host namespace is
//! touched only through loopback-free bookkeeping (`/run/netns`, cgroups, bpffs, /tmp).
//!
//! Addresses are limited to 198.51.100.0/24 and 2001:db8::/32 (plus loopback): the
//! [`addr::check_ip`] guard refuses anything else before a socket is created.

pub mod addr;
pub mod audit;
pub mod audit_tail;
pub mod cork;
pub mod daemon;
pub mod dns_client;
pub mod dns_server;
pub mod exec_bench;
pub mod fake_homes;
pub mod guest;
pub mod guest_cork;
pub mod guest_lab;
pub mod hand_out;
pub mod host;
pub mod https_upstream;
pub mod inspected_api;
pub mod kernel_bench;
pub mod kernel_stats;
pub mod netns;
pub mod nft;
pub mod noop_cgroup;
pub mod ocsf;
pub mod probe;
pub mod process;
pub mod proxy_bench;
pub mod scale_bench;
pub mod server;
pub mod sweep;
pub mod unix_peer;
pub mod update_bench;
pub mod verdicts;
pub mod vm;
pub mod world;

pub use audit::Audit;
pub use guest::Guest;
pub use probe::Probe;
pub use process::RunOutput;
pub use server::{TcpServer, UdpServer};
pub use sweep::{cleanup_stale, suite_guard};
pub use world::{Side, World};
