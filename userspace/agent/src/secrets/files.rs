//! Which host paths a bottle's commands see masked (read-only and empty): cork's default
//! list of credential files and directories in the home of every user concerned, the
//! manifest's `[files] hide`, files named by removed variables (`SSH_AUTH_SOCK`...), less
//! the holes `[files] allow` punches. Resolved against the file system as it is now:
//! globs expanded, symlinks followed to the file that holds the secret, other mounts of
//! the same file found (see `aliases.rs`). The mounting itself happens in the command's
//! process (`cork run`'s child setup).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cork_policy::{Coverage, PathPattern, Policy};

use super::aliases;

/// Credential files and directories under every home, by default.
pub const DEFAULT_HIDDEN: &[&str] = &[
    "~/.aws",
    "~/.config/gcloud",
    "~/.azure",
    "~/.ssh",
    "~/.gnupg",
    "~/.docker/config.json",
    "~/.kube/config",
    "~/.netrc",
    "~/.git-credentials",
    "~/.config/gh/hosts.yml",
    "~/.npmrc",
    "~/.pypirc",
    "~/.config/pip/pip.conf",
    "~/.cargo/credentials.toml",
    "~/.cargo/credentials",
    "~/.composer/auth.json",
    "~/.config/composer/auth.json",
    "~/.pgpass",
    "~/.vault-token",
    "~/.terraform.d/credentials.tfrc.json",
];

/// Variables whose value names a credential file (or an SSH agent's socket): when the
/// variable is removed, the file is masked too.
pub const PATH_VARIABLES: &[&str] = &[
    "SSH_AUTH_SOCK",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AWS_SHARED_CREDENTIALS_FILE",
];

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

/// Whether a mask hides a file (an empty file is mounted) or a directory (an empty
/// directory is mounted). Sockets and other non-directories count as files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    File,
    Dir,
}

/// One path to mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Absolute, symlinks resolved.
    pub path: PathBuf,
    pub kind: MaskKind,
    /// Which list asked for it, and any caveat (more hard links than this one).
    pub why: String,
}

impl Mask {
    /// The form the `enforced` audit event lists.
    pub fn audit(&self) -> cork_audit::MaskedPath {
        cork_audit::MaskedPath {
            path: self.path.display().to_string(),
            kind: match self.kind {
                MaskKind::File => "file",
                MaskKind::Dir => "dir",
            },
            why: self.why.clone(),
        }
    }
}

/// Everything to mask for `policy`, given the homes concerned and the variables removed
/// from the command's environment (name, value). Sorted by path, each path once, none
/// below a masked directory.
pub fn masks(policy: &Policy, homes: &[Home], removed: &[(OsString, OsString)]) -> Vec<Mask> {
    let mut r = Resolver {
        homes,
        allow: &policy.files.allow,
        found: BTreeMap::new(),
        visited: HashSet::new(),
    };
    let defaults: Vec<PathPattern> = DEFAULT_HIDDEN
        .iter()
        .filter_map(|p| PathPattern::parse(p).ok())
        .collect();
    let lists = defaults
        .iter()
        .map(|p| (p, format!("default {}", p.text)))
        .chain(
            policy
                .files
                .hide
                .iter()
                .enumerate()
                .map(|(i, p)| (p, format!("files.hide[{i}] {}", p.text))),
        );
    for (pattern, why) in lists {
        if pattern.in_home {
            for home in homes {
                for m in expand(&home.path, &pattern.components) {
                    r.hide(&m, &format!("{why} of {}", home.whose));
                }
            }
        } else {
            for m in expand(Path::new("/"), &pattern.components) {
                r.hide(&m, &why);
            }
        }
    }
    for (name, value) in removed {
        if PATH_VARIABLES.iter().any(|v| name == v) {
            let path = Path::new(value);
            if path.is_absolute() {
                r.hide(path, &format!("named by {}", name.to_string_lossy()));
            }
        }
    }
    let mut found = r.found;
    for (alias, mask) in aliases::of(&found) {
        found.entry(alias).or_insert(mask);
    }
    outermost(found)
}

struct Resolver<'a> {
    homes: &'a [Home],
    allow: &'a [PathPattern],
    found: BTreeMap<PathBuf, Mask>,
    /// Canonical paths already decided.
    visited: HashSet<PathBuf>,
}

impl Resolver<'_> {
    /// How the allow list relates to `path`: the strongest coverage over every home.
    fn allowed(&self, path: &Path) -> Coverage {
        let mut best = Coverage::None;
        for a in self.allow {
            let homes: Vec<Option<&Path>> = if a.in_home {
                self.homes.iter().map(|h| Some(h.path.as_path())).collect()
            } else {
                vec![None]
            };
            for h in homes {
                match a.coverage(h, path) {
                    c @ (Coverage::Exact | Coverage::Below) => return c,
                    Coverage::Ancestor => best = Coverage::Ancestor,
                    Coverage::None => {}
                }
            }
        }
        best
    }

    /// Masks `path` (as spelled), or its entries when something below it is allowed.
    fn hide(&mut self, path: &Path, why: &str) {
        // A path that does not exist (or a dangling symlink) has nothing to hide; one the
        // bottle creates later is the bottle's own.
        let Ok(meta) = fs::metadata(path) else {
            return;
        };
        let Ok(real) = fs::canonicalize(path) else {
            return;
        };
        // Symlinks can lead back here (cycles, or two spellings of one file).
        if !self.visited.insert(real.clone()) {
            return;
        }
        let spelled = self.allowed(path);
        let resolved = self.allowed(&real);
        if [spelled, resolved]
            .iter()
            .any(|c| matches!(c, Coverage::Exact | Coverage::Below))
        {
            return;
        }
        if meta.is_dir() && [spelled, resolved].contains(&Coverage::Ancestor) {
            // Mask every entry but the way to what is allowed, through the spelled path
            // so that `allow` patterns written against it keep matching.
            let Ok(entries) = fs::read_dir(path) else {
                return;
            };
            for e in entries.flatten() {
                self.hide(&path.join(e.file_name()), why);
            }
            return;
        }
        let (kind, why) = if meta.is_dir() {
            (MaskKind::Dir, why.to_owned())
        } else if meta.nlink() > 1 {
            (
                MaskKind::File,
                format!(
                    "{why}; {} hard links, the others are not masked",
                    meta.nlink()
                ),
            )
        } else {
            (MaskKind::File, why.to_owned())
        };
        if kind == MaskKind::Dir {
            self.links_out(&real, &why);
        }
        self.found.entry(real.clone()).or_insert(Mask {
            path: real,
            kind,
            why,
        });
    }

    /// Masks what symlinks inside the masked directory `dir` lead to elsewhere in a home
    /// (a dotfiles checkout linked file by file into `~/.ssh`): the directory's mask hides
    /// the links, not their targets. Targets outside every home are left alone, since
    /// directories such as `~/.config/gcloud` hold virtualenvs linked to system files.
    /// Bounded: [`MAX_WALK`] entries, [`MAX_DEPTH`] levels.
    fn links_out(&mut self, dir: &Path, why: &str) {
        let mut queue = vec![(dir.to_path_buf(), 0)];
        let mut seen = 0;
        while let Some((d, depth)) = queue.pop() {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                seen += 1;
                if seen > MAX_WALK {
                    return;
                }
                let Ok(ft) = e.file_type() else { continue };
                let path = e.path();
                if ft.is_dir() && depth < MAX_DEPTH {
                    queue.push((path, depth + 1));
                } else if ft.is_symlink()
                    && let Ok(target) = fs::canonicalize(&path)
                    && !target.starts_with(dir)
                    && self.homes.iter().any(|h| target.starts_with(&h.path))
                {
                    self.hide(&target, &format!("{why}, linked from {}", path.display()));
                }
            }
        }
    }
}

/// How many entries of a masked directory [`Resolver::links_out`] looks at, at most.
const MAX_WALK: usize = 4096;
/// How deep below a masked directory it looks.
const MAX_DEPTH: usize = 4;

/// The existing paths under `base` that `components` (one glob each) match, as spelled
/// (symlinks not resolved). Unreadable directories match nothing.
fn expand(base: &Path, components: &[String]) -> Vec<PathBuf> {
    let mut current = vec![base.to_path_buf()];
    for comp in components {
        let mut next = Vec::new();
        for dir in &current {
            if !cork_policy::has_wildcard(comp) {
                let p = dir.join(comp);
                if fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
                continue;
            }
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            let mut matched: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| cork_policy::glob_match(comp, &e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect();
            matched.sort();
            next.extend(matched);
        }
        current = next;
    }
    current
}

/// Drops every mask below a masked directory: its target would not exist any more once
/// the directory is masked, and it is hidden already.
fn outermost(found: BTreeMap<PathBuf, Mask>) -> Vec<Mask> {
    let mut out: Vec<Mask> = Vec::new();
    for (path, mask) in found {
        let covered = out
            .iter()
            .any(|m| m.kind == MaskKind::Dir && path.starts_with(&m.path) && path != m.path);
        if !covered {
            out.push(mask);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        cork_policy::compile(
            &format!("version = 1\n[bottle]\nname = \"t\"\n{extra}"),
            "t",
        )
        .expect("test manifest compiles")
    }

    /// A throwaway home with some credential files; removed on drop.
    struct TempHome(PathBuf);

    impl TempHome {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("cork-secrets-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            for d in [".aws", ".ssh", ".config/my-tool", ".docker", "elsewhere"] {
                fs::create_dir_all(dir.join(d)).expect("mkdir");
            }
            for f in [
                ".aws/credentials",
                ".ssh/id_ed25519",
                ".ssh/known_hosts",
                ".docker/config.json",
                ".config/my-tool/token",
                "elsewhere/key",
            ] {
                fs::write(dir.join(f), "fake").expect("write");
            }
            std::os::unix::fs::symlink(dir.join("elsewhere/key"), dir.join(".netrc"))
                .expect("symlink");
            fs::write(dir.join("elsewhere/ssh-key"), "fake").expect("write");
            std::os::unix::fs::symlink(dir.join("elsewhere/ssh-key"), dir.join(".ssh/id_rsa"))
                .expect("symlink");
            std::os::unix::fs::symlink("/usr", dir.join(".aws/usr")).expect("symlink");
            TempHome(dir)
        }

        fn home(&self) -> Vec<Home> {
            vec![Home {
                path: fs::canonicalize(&self.0).expect("canonical"),
                whose: "test".into(),
            }]
        }
    }

    impl Drop for TempHome {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn paths(home: &[Home], masks: &[Mask]) -> Vec<(String, MaskKind)> {
        masks
            .iter()
            .map(|m| {
                let rel = m.path.strip_prefix(&home[0].path).expect("under the home");
                (rel.display().to_string(), m.kind)
            })
            .collect()
    }

    #[test]
    fn defaults_hide_and_symlinks_resolve() {
        let t = TempHome::new("defaults");
        let homes = t.home();
        let m = masks(
            &policy("[files]\nhide = [\"~/.config/my-*/token\"]\n"),
            &homes,
            &[],
        );
        assert_eq!(
            paths(&homes, &m),
            [
                (".aws".to_owned(), MaskKind::Dir),
                (".config/my-tool/token".to_owned(), MaskKind::File),
                (".docker/config.json".to_owned(), MaskKind::File),
                (".ssh".to_owned(), MaskKind::Dir),
                ("elsewhere/key".to_owned(), MaskKind::File),
                ("elsewhere/ssh-key".to_owned(), MaskKind::File),
            ]
        );
        let linked = m
            .iter()
            .find(|m| m.path.ends_with("elsewhere/ssh-key"))
            .expect("linked");
        assert!(
            linked
                .why
                .starts_with("default ~/.ssh of test, linked from "),
            "{}",
            linked.why
        );
        let netrc = m
            .iter()
            .find(|m| m.path.ends_with("elsewhere/key"))
            .expect("netrc");
        assert_eq!(netrc.why, "default ~/.netrc of test");
    }

    #[test]
    fn allow_punches_holes() {
        let t = TempHome::new("allow");
        let homes = t.home();
        let m = masks(
            &policy("[files]\nallow = [\"~/.ssh/known_hosts\", \"~/.docker\"]\n"),
            &homes,
            &[],
        );
        let got = paths(&homes, &m);
        assert!(
            got.contains(&(".ssh/id_ed25519".to_owned(), MaskKind::File)),
            "{got:?}"
        );
        assert!(
            !got.iter()
                .any(|(p, _)| p == ".ssh" || p.contains("known_hosts")),
            "{got:?}"
        );
        assert!(
            !got.iter().any(|(p, _)| p.starts_with(".docker")),
            "{got:?}"
        );
    }

    #[test]
    fn variables_name_files_and_hard_links_are_said() {
        let t = TempHome::new("vars");
        let homes = t.home();
        let key = homes[0].path.join("elsewhere/key");
        fs::hard_link(&key, homes[0].path.join("elsewhere/link")).expect("link");
        let sock = homes[0].path.join("elsewhere/link");
        let removed = vec![(
            OsString::from("SSH_AUTH_SOCK"),
            sock.clone().into_os_string(),
        )];
        let m = masks(&policy(""), &homes, &removed);
        let link = m
            .iter()
            .find(|m| m.path == sock)
            .expect("named file masked");
        assert_eq!(
            link.why,
            "named by SSH_AUTH_SOCK; 2 hard links, the others are not masked"
        );
    }
}
