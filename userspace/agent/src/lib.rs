//! The agent layer: everything cork holds for one bottle while it lives, whoever runs it
//! (`cork run` today; `cork vm` and the daemon on the same types).
//!
//! - [`key`]: a bottle's identity — [`BottleId`] and the [`BottleKey`] that owns every name
//!   and path derived from it (cgroup, pin dir, run dir), and their parsing for `cork clean`.
//! - [`runtime`]: [`BottleRuntime`], one bottle's enforcement, DNS proxy, inspecting proxy
//!   and audit reader, with explicit start / verify / stop.
//! - [`adopt`]: [`BottleRuntime::adopt`], a bottle a restarted daemon takes back from
//!   the kernel's pins and its saved state — or leaves fenced, saying why.
//! - [`update`]: [`BottleRuntime::update`], a running bottle's policy replaced as one
//!   generation.
//! - [`bottle`]: the kernel half (cgroup + eBPF enforcement) and its safe teardown order.
//! - [`kernel_audit`]: kernel records → audit events.
//! - [`adapters`]: the bpf maps behind the DNS proxy's learner and the inspecting proxy's
//!   redirect lookups.
//! - [`secrets`]: the environment variables and host files a bottle does not get.
//! - [`cgroup`], [`mounts`], [`clean`], [`upstream`], [`web`].

pub mod adapters;
pub mod adopt;
pub mod bottle;
pub mod cgroup;
pub mod clean;
pub mod kernel_audit;
pub mod key;
pub mod mounts;
pub mod runtime;
pub mod secrets;
pub mod update;
pub mod upstream;
pub mod vm;
pub mod web;

pub use bottle::{Bottle, BottleError, TeardownProblem};
/// The registry `supervise` holds wait in (the daemon owns one, see
/// [`BottleRuntime::supervise_through`]).
pub use cork_inspect::approvals;
pub use key::{BottleId, BottleKey};
pub use runtime::{BottleRuntime, GuestFiles, RuntimeError};
pub use update::{UpdateError, Updated, manifest_digest};
