//! cork-nft: the nftables half of a VM bottle's enforcement.
//!
//! A VM bottle's guest sits on a tap; the tc program on the tap's ingress judges every
//! guest packet with the bottle's eBPF policy and marks what it lets through
//! ([`marks`]). This crate owns what nftables does with those marks, in three layers:
//!
//! - [`VmRules`] → [`BottlePlan`] ([`vm`], [`plan`]): pure data, golden-tested; no kernel.
//! - [`kernel`]: sends a plan as one atomic nftnl batch ([`apply`]), reads the table back
//!   and compares it with the plan ([`read_back`]; a guest must not start if it differs),
//!   removes a bottle's chains ([`remove`], deleting the table when it is empty), and
//!   lists the bottles that have chains ([`bottles`], for `cork clean`) and whether the
//!   table exists ([`table_exists`], for leak checks).
//! - `sys`/`compile`/`netlink` (private): libnftnl objects, the plan → expression
//!   compiler, and the netlink conversation.
//!
//! Everything acts in the calling thread's network namespace.

pub mod kernel;
pub mod marks;
pub mod plan;
pub mod vm;

mod compile;
mod netlink;
mod sys;

pub use kernel::{NftError, apply, apply_plan, bottles, read_back, remove, table_exists};
pub use marks::{MARK_DIRECT, MARK_DNS, MARK_HOST_PORT, MARK_INSPECT, MARK_MASK, Marks};
pub use plan::{BottlePlan, TABLE};
pub use vm::{PlanError, VmRules};
