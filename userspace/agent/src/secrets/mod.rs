//! What of the host's secrets a bottle's commands never see, decided before anything runs
//! in the bottle, for `cork run` and every later way into a bottle:
//!
//! - [`env`]: the variables removed from the command's environment (sensitive names,
//!   values the DLP scanner recognises, the manifest's `[env]`), each with its reason.
//! - [`homes`]: whose credential files those are (CMD's user, root, the invoking user).
//! - [`providers`]: removed provider keys cork holds as credentials instead, when the
//!   bottle may reach the provider's API through the inspecting proxy.
//! - [`files`]: the paths masked read-only and empty in the command's mount namespace
//!   (credential files of every user concerned, the manifest's `[files]`), symlinks
//!   resolved, with their other mounts from [`aliases`].
//!
//! [`decide`] puts them together for one command; the command side applies the result:
//! removes the variables before exec, mounts the masks between fork and exec.

mod aliases;
pub mod env;
pub mod files;
pub mod homes;
pub mod providers;
pub mod wire;

pub use env::{Removal, ScrubReason, known_secrets, scanner_knowing, scrub, value_scanner};
pub use files::{Mask, MaskKind, masks};
pub use homes::{Home, homes};

use std::ffi::OsString;
use std::path::Path;

use cork_policy::{Credential, FilesConfig, Policy};

/// What one command started in a bottle does not get.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Variables to remove from its environment, each with its reason.
    pub removals: Vec<Removal>,
    /// Paths to mask in its mount namespace.
    pub masks: Vec<Mask>,
    /// Credentials to add to the policy (with [`Policy::add_credential`]) before the
    /// bottle's proxy is set up: removed provider keys the bottle gets placeholders for.
    pub credentials: Vec<Credential>,
}

/// Decides for a command that runs as `cmd_uid` and would inherit `vars` (the invoking
/// environment, where `SUDO_USER` and `HOME` name the invoking user too); `providers` are
/// the provider keys cork may hold instead ([`providers::known`]).
pub fn decide(
    policy: &Policy,
    cmd_uid: u32,
    vars: &[(OsString, OsString)],
    providers: &[providers::Provider],
) -> Result<Decision, cork_dlp::DlpError> {
    let scanner = value_scanner(policy, vars)?;
    let mut removals = scrub(policy, vars, &scanner);
    let credentials = providers::credentials(policy, &removals, providers);
    for r in &mut removals {
        r.swapped_on = credentials
            .iter()
            .find(|c| r.name == c.env.as_str())
            .map(|c| c.domain.clone());
    }
    let masks = masks_for(&policy.files, cmd_uid, vars, &removals);
    Ok(Decision {
        removals,
        masks,
        credentials,
    })
}

/// The masks for a command that runs as `cmd_uid` with `[files]` as `files`, whose
/// invoking environment is `vars` and from which `removals` go: the other half of
/// [`decide`], which `cork exec` makes itself (paths are resolved in the caller's mount
/// namespace, where the command's is made) while the daemon decides the removals.
pub fn masks_for(
    files: &FilesConfig,
    cmd_uid: u32,
    vars: &[(OsString, OsString)],
    removals: &[Removal],
) -> Vec<Mask> {
    let removed: Vec<(OsString, OsString)> = vars
        .iter()
        .filter(|(n, _)| removals.iter().any(|r| &r.name == n))
        .cloned()
        .collect();
    let var = |name: &str| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let homes = homes(
        cmd_uid,
        var("SUDO_USER").and_then(|v| v.to_str()),
        var("HOME").map(Path::new),
    );
    masks(files, &homes, &removed)
}
