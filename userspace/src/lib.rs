//! cork: kernel-enforced egress control for sandboxed AI agents.
//!
//! The kernel decides every connection a bottle makes; this crate turns a compiled
//! [`cork_policy::Policy`] into kernel state (eBPF programs and maps on the bottle's cgroup),
//! verifies it, runs the bottled command, and turns kernel verdicts into audit events.

pub mod audit;
pub mod bpf;
pub mod cgroup;
pub mod clean;
pub mod dlp;
pub mod dns;
pub mod mounts;
pub mod proxy;
pub mod run;
