//! cork: kernel-enforced egress control for sandboxed AI agents — the `cork` command.
//!
//! This crate is the top of the stack: the command line, [`probe`] (the conformance gate
//! run inside a bottle), and [`run`], which is about the
//! command (fork, cgroup join, capabilities, seccomp, signals, exit status). Everything
//! about the bottle itself — identity, enforcement, DNS and inspecting proxies, audit — is
//! [`cork_agent`]'s, below it.

pub mod approvals_verb;
pub mod audit_flow;
pub mod audit_verb;
pub mod control;
pub mod dlp_scan;
pub mod ocsf;
pub mod probe;
pub mod run;
pub mod seams;
pub mod verbs;
pub mod vm;

pub use cork_agent as agent;
