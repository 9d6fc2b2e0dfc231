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

use cork_policy::{Coverage, FilesConfig, PathPattern};

use super::aliases;
use super::homes::Home;

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

/// Key agents' sockets, by default: whoever connects uses the keys they hold (a bottle
/// running as root reaches every user's, whether or not `SSH_AUTH_SOCK` names one).
pub const DEFAULT_AGENT_SOCKETS: &[&str] = &[
    "/tmp/ssh-*/agent.*",
    "/run/user/*/ssh-agent.socket",
    "/run/user/*/openssh_agent",
    "/run/user/*/gnupg",
    "/run/user/*/keyring",
    "/run/user/*/gcr",
];

/// Variables whose value names a credential file (or an SSH agent's socket): when the
/// variable is removed, the file is masked too.
pub const PATH_VARIABLES: &[&str] = &[
    "SSH_AUTH_SOCK",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AWS_SHARED_CREDENTIALS_FILE",
];

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

/// Everything to mask for a bottle with `[files]` as `files`, given the homes concerned and the variables removed
/// from the command's environment (name, value). Sorted by path, each path once, none
/// below a masked directory.
pub fn masks(files: &FilesConfig, homes: &[Home], removed: &[(OsString, OsString)]) -> Vec<Mask> {
    let mut r = Resolver {
        homes,
        allow: &files.allow,
        found: BTreeMap::new(),
        visited: HashSet::new(),
    };
    let defaults: Vec<PathPattern> = DEFAULT_HIDDEN
        .iter()
        .chain(DEFAULT_AGENT_SOCKETS)
        .filter_map(|p| PathPattern::parse(p).ok())
        .collect();
    let lists = defaults
        .iter()
        .map(|p| (p, format!("default {}", p.text)))
        .chain(
            files
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
#[path = "files_tests.rs"]
mod tests;
