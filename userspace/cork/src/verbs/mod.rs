//! The handlers of the `cork` verbs that are not a module of their own elsewhere (`run/`,
//! `probe/`, `audit_verb`, `approvals_verb`): each turns its parsed flags into one call
//! and an exit status, so `bin/cork.rs` is only the command line and its dispatch.

pub mod bottle;
pub mod check;
pub mod daemon;
pub mod dlp;
pub mod vm;
