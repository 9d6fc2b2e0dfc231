//! A bottle's identity and every name derived from it.
//!
//! [`BottleId`] is a small number unique among the bottles alive on this host: the
//! allocator takes the lowest id whose lock file (`/run/cork/ids/<id>.lock`) nobody holds
//! and keeps the `flock` for the bottle's life, so two agents (two `cork run`s, a daemon)
//! never hand out the same id. The lock file names the bottle's key: a killed agent's id
//! comes free once its bottle's pins are gone (`cork clean`), and stays reserved while
//! they are there — for a restarted daemon to take the bottle back with its id.
//!
//! [`BottleKey`] is `cork-<name>-<agent pid>_<id>`: the bottle's cgroup, its bpffs pin
//! directory and its run directory (`/run/cork/<key>`, the CA bundle) are all named after
//! it, and `cork clean` parses it back to find the agent that owns a leftover. Bottle names
//! are `[a-z0-9][a-z0-9-]*`, so the last `-` starts the owner and `_` cannot occur in a
//! name (bpffs refuses names with a `.`, so that is not the separator). Keys of older agents (`cork-<name>-<pid>`, no id) still parse.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Every key starts with this; `cork clean` touches nothing else.
pub const KEY_PREFIX: &str = "cork-";
/// Per-bottle run directories (CA bundle): `/run/cork/<key>`.
pub const RUN_DIR: &str = "/run/cork";
/// Lock files of the ids in use.
pub const ID_DIR: &str = "/run/cork/ids";
/// Ids are `1..=MAX_ID`.
pub const MAX_ID: u32 = 65_535;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("creating {ID_DIR}")]
    IdDir(#[source] io::Error),
    #[error("taking the bottle id lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("every bottle id 1..={MAX_ID} is in use on this host")]
    Exhausted,
}

/// A bottle's number, unique among live bottles on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BottleId(u32);

impl BottleId {
    pub fn get(self) -> u32 {
        self.0
    }

    /// Any id, for unit tests of what is derived from one (real ids come from leases).
    #[cfg(test)]
    pub(crate) fn for_tests(n: u32) -> Self {
        BottleId(n)
    }
}

impl fmt::Display for BottleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How often, and how far apart, [`IdLease::claim`] tries a busy lock: 100 ms in all,
/// far longer than another allocator's glance at it.
const CLAIM_ATTEMPTS: u32 = 20;
const CLAIM_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// A held id: the id stays ours until this is dropped (or the process dies).
#[derive(Debug)]
pub struct IdLease {
    id: BottleId,
    path: PathBuf,
    lock: Option<Flock<File>>,
}

impl IdLease {
    /// Takes the lowest free id.
    pub fn allocate() -> Result<IdLease, KeyError> {
        Self::allocate_in(Path::new(ID_DIR))
    }

    /// [`IdLease::allocate`] with the lock files in `dir` (tests).
    pub fn allocate_in(dir: &Path) -> Result<IdLease, KeyError> {
        std::fs::create_dir_all(dir).map_err(KeyError::IdDir)?;
        for n in 1..=MAX_ID {
            let path = dir.join(format!("{n}.lock"));
            if let Some(lock) = try_lock(&path)? {
                if still_pinned(&lock) {
                    // Free, but a killed agent's bottle under this id is still fenced
                    // (a daemon will take it back, or `cork clean` remove it): two
                    // bottles never share an id. The file stays, with its mark.
                    continue;
                }
                return Ok(IdLease {
                    id: BottleId(n),
                    path,
                    lock: Some(lock),
                });
            }
        }
        Err(KeyError::Exhausted)
    }

    pub fn id(&self) -> BottleId {
        self.id
    }

    /// Takes id `n` if no live agent holds it (`cork clean` removing what a dead agent
    /// left under that id, holding it so that no new bottle takes the id meanwhile).
    ///
    /// A busy lock is tried again for a moment before it counts as held: another cork
    /// allocating an id takes each free id's lock just long enough to see whether its
    /// bottle is still pinned ([`IdLease::allocate`]), and a daemon taking its bottles
    /// back must not mistake that glance for a live agent (it would leave its own bottle
    /// fenced). A live agent holds the lock for its bottle's life.
    pub fn claim(n: u32) -> Result<Option<IdLease>, KeyError> {
        if n == 0 || n > MAX_ID {
            return Ok(None);
        }
        std::fs::create_dir_all(ID_DIR).map_err(KeyError::IdDir)?;
        let path = Path::new(ID_DIR).join(format!("{n}.lock"));
        for attempt in 0..CLAIM_ATTEMPTS {
            if let Some(lock) = try_lock(&path)? {
                return Ok(Some(IdLease {
                    id: BottleId(n),
                    path,
                    lock: Some(lock),
                }));
            }
            if attempt + 1 < CLAIM_ATTEMPTS {
                std::thread::sleep(CLAIM_PAUSE);
            }
        }
        Ok(None)
    }
}

impl IdLease {
    /// Writes `key` into the lock file: the allocator reads it to keep the id of a killed
    /// agent's still-pinned bottle reserved, and `cork clean` to tell a bottle a
    /// restarted daemon took back (its key names the daemon that died) from a leftover.
    pub fn mark(&self, key: &BottleKey) -> io::Result<()> {
        use std::io::Write;
        let Some(lock) = &self.lock else {
            return Ok(());
        };
        let mut file: &File = lock;
        file.set_len(0)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
        file.write_all(key.to_string().as_bytes())
    }

    /// Whether a live agent holds `key`'s id with `key` written in the lock file (see
    /// [`IdLease::mark`]).
    pub fn held_for(key: &BottleKey) -> bool {
        let Some(id) = key.id() else {
            return false;
        };
        let path = Path::new(ID_DIR).join(format!("{id}.lock"));
        let marked = std::fs::read_to_string(&path).is_ok_and(|s| s == key.to_string());
        // Free (we got it, and let it go again at once) means nobody holds it.
        marked && matches!(Self::claim(id.get()), Ok(None))
    }
}

impl Drop for IdLease {
    fn drop(&mut self) {
        // Unlink while still holding the lock: a concurrent allocator that opened the old
        // file sees, after its flock, that the path no longer names it and moves on.
        let _ = std::fs::remove_file(&self.path);
        drop(self.lock.take());
    }
}

/// Whether the lock file names (see [`IdLease::mark`]) a bottle whose pins still exist.
fn still_pinned(lock: &File) -> bool {
    use std::io::Read;
    let mut text = String::new();
    let mut file = lock;
    if file.read_to_string(&mut text).is_err() {
        return false;
    }
    BottleKey::parse(text.trim())
        .is_some_and(|key| key.pin_dir(Path::new(crate::mounts::BPFFS)).exists())
}

/// The lock on `path`, or `None` when someone else holds it. The usual lock-file dance:
/// the holder may unlink the file between our open and our flock, so after locking check
/// that the path still names the file we locked.
fn try_lock(path: &Path) -> Result<Option<Flock<File>>, KeyError> {
    let err = |source| KeyError::Lock {
        path: path.to_path_buf(),
        source,
    };
    for _ in 0..8 {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(err)?;
        let held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => held,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(err(e.into())),
        };
        let ours = held.metadata().map(|m| m.ino()).ok();
        let now = std::fs::metadata(path).map(|m| m.ino()).ok();
        if ours.is_some() && ours == now {
            return Ok(Some(held));
        }
    }
    Ok(None)
}

/// Every name and path derived from one bottle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BottleKey {
    name: String,
    agent_pid: u32,
    id: Option<BottleId>,
}

impl BottleKey {
    /// The key of bottle `name` with id `id`, owned by this process.
    pub fn new(name: &str, id: BottleId) -> Self {
        BottleKey {
            name: name.to_owned(),
            agent_pid: std::process::id(),
            id: Some(id),
        }
    }

    /// Parses a cgroup, pin or run directory name; `None` for names that are not cork's.
    pub fn parse(key: &str) -> Option<Self> {
        let rest = key.strip_prefix(KEY_PREFIX)?;
        let (name, owner) = rest.rsplit_once('-')?;
        let (pid, id) = match owner.split_once('_') {
            Some((pid, id)) => (pid, Some(BottleId(id.parse().ok()?))),
            None => (owner, None),
        };
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(BottleKey {
            name: name.to_owned(),
            agent_pid: pid.parse().ok()?,
            id,
        })
    }

    /// The bottle's name from its manifest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The agent process that owns the bottle.
    pub fn agent_pid(&self) -> u32 {
        self.agent_pid
    }

    /// The bottle's id (`None` only for keys of agents older than ids).
    pub fn id(&self) -> Option<BottleId> {
        self.id
    }

    /// `<cgroup2 root>/<key>`.
    pub fn cgroup_path(&self, cgroup_root: &Path) -> PathBuf {
        cgroup_root.join(self.to_string())
    }

    /// `<bpffs>/<key>`: the bottle's map and link pins.
    pub fn pin_dir(&self, bpffs: &Path) -> PathBuf {
        bpffs.join(self.to_string())
    }

    /// `/run/cork/<key>`: files the bottle's command reads (the CA bundle).
    pub fn run_dir(&self) -> PathBuf {
        Path::new(RUN_DIR).join(self.to_string())
    }
}

impl fmt::Display for BottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}{}-{}", self.name, self.agent_pid)?;
        if let Some(id) = self.id {
            write!(f, "_{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = BottleKey {
            name: "agent-1".into(),
            agent_pid: 4242,
            id: Some(BottleId(7)),
        };
        assert_eq!(key.to_string(), "cork-agent-1-4242_7");
        assert_eq!(BottleKey::parse("cork-agent-1-4242_7"), Some(key.clone()));
        assert_eq!(
            key.pin_dir(Path::new("/sys/fs/bpf")),
            Path::new("/sys/fs/bpf/cork-agent-1-4242_7")
        );
        assert_eq!(key.run_dir(), Path::new("/run/cork/cork-agent-1-4242_7"));
    }

    #[test]
    fn older_keys_parse_without_an_id() {
        let key = BottleKey::parse("cork-agent-1-4242").expect("an older key");
        assert_eq!(
            (key.name(), key.agent_pid(), key.id()),
            ("agent-1", 4242, None)
        );
        let key = BottleKey::parse("cork-a-1").expect("a short key");
        assert_eq!((key.name(), key.agent_pid()), ("a", 1));
    }

    #[test]
    fn other_names_are_not_keys() {
        for name in [
            "corkscrew-1",
            "cork-agent-x",
            "cork--1",
            "cork-1",
            "cork-Agent-1",
            "cork-agent-1-2_x",
            "cork-agent-1-_2",
            "cork-agent-1-2.3",
            "system.slice",
            "ids",
        ] {
            assert_eq!(BottleKey::parse(name), None, "{name}");
        }
    }

    #[test]
    fn ids_are_unique_while_held_and_come_free() {
        let dir = std::env::temp_dir().join(format!("cork-id-test-{}", std::process::id()));
        let a = IdLease::allocate_in(&dir).expect("first id");
        let b = IdLease::allocate_in(&dir).expect("second id");
        assert_eq!((a.id().get(), b.id().get()), (1, 2));
        drop(a);
        let c = IdLease::allocate_in(&dir).expect("a freed id");
        assert_eq!(c.id().get(), 1);
        drop((b, c));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
