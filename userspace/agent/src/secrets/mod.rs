//! What of the host's secrets a bottle's commands never see, decided before anything runs
//! in the bottle, for `cork run` and every later way into a bottle:
//!
//! - [`env`]: the variables removed from the command's environment (sensitive names,
//!   values the DLP scanner recognises, the manifest's `[env]`), each with its reason.
//! - [`homes`]: whose credential files those are (CMD's user, root, the invoking user).
//! - [`files`]: the paths masked read-only and empty in the command's mount namespace
//!   (credential files of every user concerned, the manifest's `[files]`), symlinks
//!   resolved, with their other mounts from [`aliases`].
//!
//! The command side applies both: removes the variables before exec, mounts the masks
//! between fork and exec.

mod aliases;
pub mod env;
pub mod files;
pub mod homes;

pub use env::{Removal, ScrubReason, scrub, value_scanner};
pub use files::{Mask, MaskKind, masks};
pub use homes::{Home, homes};
