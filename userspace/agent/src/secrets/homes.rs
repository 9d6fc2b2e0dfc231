//! Whose credential files a bottle hides: the homes of CMD's user, of root and of the
//! user who invoked cork, from the password database and `$HOME`.

use std::path::{Path, PathBuf};

/// A home whose credential files are hidden, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub path: PathBuf,
    /// `CMD's user NAME (uid N)`, `root`, `SUDO_USER NAME`, `$HOME`.
    pub whose: String,
}

/// The homes concerned: CMD's user's (`cmd_uid`, from the password database), root's,
/// the invoking user's (`SUDO_USER` when run through sudo) and `$HOME` as given, without
/// duplicates. A user without an entry or a relative `$HOME` adds nothing.
pub fn homes(cmd_uid: u32, sudo_user: Option<&str>, home_env: Option<&Path>) -> Vec<Home> {
    use nix::unistd::{Uid, User};
    let mut out: Vec<Home> = Vec::new();
    let mut add = |path: PathBuf, whose: String| {
        if path.is_absolute() && path != Path::new("/") && !out.iter().any(|h| h.path == path) {
            out.push(Home { path, whose });
        }
    };
    if let Ok(Some(u)) = User::from_uid(Uid::from_raw(cmd_uid)) {
        add(u.dir, format!("CMD's user {} (uid {cmd_uid})", u.name));
    }
    if let Ok(Some(u)) = User::from_uid(Uid::from_raw(0)) {
        add(u.dir, "root".to_owned());
    }
    if let Some(name) = sudo_user
        && let Ok(Some(u)) = User::from_name(name)
    {
        add(u.dir, format!("SUDO_USER {name}"));
    }
    if let Some(h) = home_env {
        add(h.to_path_buf(), "$HOME".to_owned());
    }
    out
}
