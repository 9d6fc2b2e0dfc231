//! The daemon's state directory (`--state-dir`, default [`DEFAULT_STATE_DIR`]): what a
//! restarted daemon needs to take its standing bottles back.
//!
//! ```text
//! <state-dir>/                 0700 root
//!   bottles/                   0700 root
//!     <bottle name>.json       0600 root: one SavedBottle
//!   approvals.json             0600 root: held requests, remembered approvals, next id
//! ```
//!
//! A file is written whole or not at all (a temporary file beside it, fsync, rename,
//! fsync of the directory), when a bottle is created and after each policy update, and
//! removed when the bottle is removed. It holds the bottle CA's private key, so nothing
//! here is ever readable by anyone but root. The file is never trusted alone: the daemon
//! re-verifies everything it says against the kernel (`cork_agent::adopt`).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cork_agent::BottleKey;
use cork_agent::adopt::SavedCa;
use serde::{Deserialize, Serialize};

/// Where the daemon keeps its state unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cork";
/// The format of [`SavedBottle`] files this daemon writes and reads.
pub const FORMAT: u32 = 1;
/// The largest state file read (a manifest of 100 000 rules is a few MB).
const MAX_FILE: u64 = 64 << 20;

/// One standing bottle, as a restarted daemon needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedBottle {
    pub format: u32,
    pub name: String,
    /// Its key (cgroup, pins and run directory are named after it).
    pub key: String,
    /// When it was created (RFC 3339), shown again after a restart.
    pub created: String,
    pub origin: String,
    /// The policy generation in force, and its manifest text.
    pub generation: u64,
    pub manifest: String,
    /// The ports its programs redirect DNS and inspected flows to (load-time constants).
    pub dns_port: u16,
    pub proxy_port: u16,
    /// Its CA, when it inspects.
    pub ca: Option<SavedCa>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {} is corrupt", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file {} is not a bottle's state: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
}

/// One state file read back: the bottle name its file is named after, and what it holds.
#[derive(Debug)]
pub struct Loaded {
    pub name: String,
    pub path: PathBuf,
    pub saved: Result<SavedBottle, StateError>,
}

/// The opened state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    bottles: PathBuf,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io { what, path, source }
}

/// Writes `name` in `dir` whole or not at all, 0600: a temporary file beside it
/// (`.NAME.tmp`), fsync, rename, fsync of the directory — a reader (the next daemon)
/// sees the old file or the new one, never half of one.
fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("creating", &tmp))?;
    f.write_all(bytes).map_err(io_err("writing", &tmp))?;
    f.sync_all().map_err(io_err("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path))?;
    // The rename itself survives a power cut only once the directory is synced.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

/// `<state-dir>/approvals.json`: where the held requests' registry is kept
/// (`cork_agent::approvals`), written as the bottles' files are.
pub struct ApprovalsFile {
    dir: PathBuf,
}

impl ApprovalsFile {
    const NAME: &str = "approvals.json";
}

impl cork_agent::approvals::RegistryStore for ApprovalsFile {
    fn place(&self) -> String {
        self.dir.join(Self::NAME).display().to_string()
    }

    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(Self::NAME)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        write_whole(&self.dir, Self::NAME, bytes).map_err(io::Error::other)
    }
}

/// Creates `dir` (and parents) when missing; makes it 0700 root either way.
fn private_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("creating", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err("restricting", dir))
}

impl StateDir {
    /// Opens (creating) `root` and its `bottles/`, both 0700.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        private_dir(root)?;
        let bottles = root.join("bottles");
        private_dir(&bottles)?;
        Ok(StateDir {
            root: root.to_path_buf(),
            bottles,
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.bottles.join(format!("{name}.json"))
    }

    /// Writes `bottle`'s file atomically (mode 0600).
    pub fn save(&self, bottle: &SavedBottle) -> Result<(), StateError> {
        let path = self.file(&bottle.name);
        let bytes = serde_json::to_vec_pretty(bottle).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        write_whole(&self.bottles, &format!("{}.json", bottle.name), &bytes)
    }

    /// The held requests' registry file, for `Approvals::persistent`.
    pub fn approvals_store(&self) -> ApprovalsFile {
        ApprovalsFile {
            dir: self.root.clone(),
        }
    }

    /// Removes bottle `name`'s file (gone already is fine).
    pub fn remove(&self, name: &str) -> Result<(), StateError> {
        let path = self.file(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Every bottle file, each read and checked; temporary files of an interrupted save
    /// are removed (the file they were replacing is still whole).
    pub fn load_all(&self) -> Result<Vec<Loaded>, StateError> {
        let entries = fs::read_dir(&self.bottles).map_err(io_err("listing", &self.bottles))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') && file_name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(name) = file_name.strip_suffix(".json") else {
                continue;
            };
            out.push(Loaded {
                name: name.to_owned(),
                saved: read(&path, name),
                path,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Reads and checks one file: it must parse, be of this format, and name the bottle its
/// file is named after, with a key of that bottle.
fn read(path: &Path, name: &str) -> Result<SavedBottle, StateError> {
    let invalid = |why: String| StateError::Invalid {
        path: path.to_path_buf(),
        why,
    };
    let len = fs::metadata(path).map_err(io_err("reading", path))?.len();
    if len > MAX_FILE {
        return Err(invalid(format!("{len} bytes, more than {MAX_FILE}")));
    }
    let bytes = fs::read(path).map_err(io_err("reading", path))?;
    let saved: SavedBottle =
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            path: path.to_path_buf(),
            source,
        })?;
    if saved.format != FORMAT {
        return Err(invalid(format!(
            "format {}, this daemon reads format {FORMAT}",
            saved.format
        )));
    }
    if saved.name != name {
        return Err(invalid(format!("it names bottle {:?}", saved.name)));
    }
    match BottleKey::parse(&saved.key) {
        Some(k) if k.name() == name && k.id().is_some() => {}
        _ => {
            return Err(invalid(format!(
                "{:?} is not a key of this bottle",
                saved.key
            )));
        }
    }
    if saved.dns_port == 0 {
        return Err(invalid("no DNS proxy port".to_owned()));
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cork-state-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn bottle(name: &str) -> SavedBottle {
        SavedBottle {
            format: FORMAT,
            name: name.to_owned(),
            key: format!("cork-{name}-4242_7"),
            created: "2026-12-01T10:00:00.000Z".to_owned(),
            origin: "/etc/cork/agent.toml".to_owned(),
            generation: 3,
            manifest: "version = 1\n[bottle]\nname = \"agent\"\n".to_owned(),
            dns_port: 40001,
            proxy_port: 40002,
            ca: Some(SavedCa {
                cert_pem: "-----BEGIN CERTIFICATE-----\n".to_owned(),
                key_pem: "-----BEGIN PRIVATE KEY-----\n".to_owned(),
            }),
        }
    }

    #[test]
    fn a_saved_bottle_reads_back_the_same_and_stays_private() {
        let root = scratch("round");
        let dir = StateDir::open(&root).expect("open");
        let b = bottle("agent");
        dir.save(&b).expect("save");
        // Saving again replaces the file whole.
        let mut updated = b.clone();
        updated.generation = 4;
        dir.save(&updated).expect("save again");
        let loaded = dir.load_all().expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].name, "agent");
        assert_eq!(loaded[0].saved.as_ref().expect("valid"), &updated);
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("bottles")), 0o700);
        assert_eq!(mode(&loaded[0].path), 0o600);
        dir.remove("agent").expect("remove");
        dir.remove("agent").expect("removing twice is fine");
        assert!(dir.load_all().expect("load").is_empty());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn the_approvals_file_is_written_whole_and_stays_private() {
        use cork_agent::approvals::RegistryStore;
        let root = scratch("approvals");
        let dir = StateDir::open(&root).expect("open");
        let store = dir.approvals_store();
        assert_eq!(store.load().expect("nothing yet"), None);
        store.save(b"{\"next\":1}").expect("save");
        store.save(b"{\"next\":2}").expect("save again");
        assert_eq!(store.load().expect("load"), Some(b"{\"next\":2}".to_vec()));
        let file = root.join("approvals.json");
        assert!(store.place().ends_with("approvals.json"));
        let mode = fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = fs::read_dir(&root)
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "no temporary file left: {left:?}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn corrupt_or_foreign_files_are_refused_and_say_why() {
        let root = scratch("corrupt");
        let dir = StateDir::open(&root).expect("open");
        let b = bottle("agent");
        dir.save(&b).expect("save");
        let path = root.join("bottles/agent.json");
        let whole = fs::read(&path).expect("read");
        // Truncated: a parse error naming the file.
        fs::write(&path, &whole[..whole.len() / 2]).expect("truncate");
        // Named after another bottle than its file.
        let mut other = b.clone();
        other.name = "other".into();
        other.key = "cork-other-4242_7".into();
        fs::write(
            root.join("bottles/renamed.json"),
            serde_json::to_vec(&other).expect("json"),
        )
        .expect("write");
        // A key of another bottle.
        let mut wrong_key = bottle("keyed");
        wrong_key.key = "cork-agent-4242_7".into();
        dir.save(&wrong_key).expect("save");
        // A future format.
        let mut future = bottle("future");
        future.format = FORMAT + 1;
        dir.save(&future).expect("save");
        // An unknown field.
        fs::write(
            root.join("bottles/extra.json"),
            serde_json::to_string(&bottle("extra"))
                .expect("json")
                .replacen('{', "{\"surprise\":1,", 1),
        )
        .expect("write");
        // A leftover temporary file is swept, not read.
        fs::write(root.join("bottles/.agent.json.tmp"), b"{").expect("write");

        let loaded = dir.load_all().expect("load");
        let names: Vec<&str> = loaded.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["agent", "extra", "future", "keyed", "renamed"]);
        let why =
            |i: usize| cork_audit::error_chain(loaded[i].saved.as_ref().expect_err("refused"));
        assert!(why(0).contains("agent.json is corrupt"), "{}", why(0));
        assert!(why(1).contains("unknown field"), "{}", why(1));
        assert!(why(2).contains("format 2"), "{}", why(2));
        assert!(why(3).contains("not a key of this bottle"), "{}", why(3));
        assert!(why(4).contains("names bottle \"other\""), "{}", why(4));
        assert!(!root.join("bottles/.agent.json.tmp").exists());
        let _ = fs::remove_dir_all(&root);
    }
}
