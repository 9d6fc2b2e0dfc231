//! Whether a standing bottle's origin file still holds the manifest text in force, for
//! `cork exec` (which names the origin to its command as `$CORK_MANIFEST` only then).
//! Reading and hashing the file was most of an exec at 100 000 rules (12 MB, ~15 ms): the
//! daemon checks it once, remembers the file's identity — device, inode, size, and its
//! modification and change times to the nanosecond — and answers later execs with one
//! `stat` while the identity holds. Any write to the file moves its change time, which
//! no user can set back, so a matching identity is a file nobody wrote since — unless the
//! write fell in the same timestamp tick as the identity (a filesystem without
//! fine-grained change times stamps at the scheduler tick): so a file changed in the last
//! [`SETTLE`] is checked again next time instead of remembered.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

/// A manifest larger than this is not read (the bulk manifests of 100 000 rules per
/// family are ~12 MB): such an origin is never named to the command.
const MAX_BYTES: u64 = 256 << 20;

/// How long ago a file must have last changed for its identity to be remembered.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(m: &std::fs::Metadata) -> Self {
        Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The identity of the origin when it was last found to hold the manifest's text.
#[derive(Default)]
pub(crate) struct OriginCheck {
    seen: Mutex<Option<Identity>>,
}

impl OriginCheck {
    /// Does `origin` (absolute) hold the text whose SHA-256 is `digest`? Blocking (it may
    /// read the file): call it off the reactor.
    pub(crate) fn holds(&self, origin: &str, digest: &str) -> bool {
        self.holds_at(origin, digest, std::time::SystemTime::now())
    }

    /// [`OriginCheck::holds`] at wall-clock time `now`.
    fn holds_at(&self, origin: &str, digest: &str, now: std::time::SystemTime) -> bool {
        let path = Path::new(origin);
        if !path.is_absolute() {
            return false;
        }
        let Ok(before) = std::fs::metadata(path) else {
            return false;
        };
        if !before.is_file() || before.len() > MAX_BYTES {
            return false;
        }
        let id = Identity::of(&before);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == Some(id) {
            return true;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        // Written while it was read: this read may be of neither version.
        if std::fs::metadata(path).map(|m| Identity::of(&m)).ok() != Some(id) {
            return false;
        }
        let same = cork_agent::manifest_digest(&text) == digest;
        // The change time moves with every write (and with any setting of the
        // modification time), so it alone says how long the file has been as it is.
        let settled = changed(&before)
            .and_then(|c| now.duration_since(c).ok())
            .is_some_and(|age| age >= SETTLE);
        *seen = (same && settled).then_some(id);
        same
    }
}

/// When the file's metadata last changed (its ctime), as a wall-clock time.
fn changed(m: &std::fs::Metadata) -> Option<std::time::SystemTime> {
    let secs = u64::try_from(m.ctime()).ok()?;
    let nanos = u32::try_from(m.ctime_nsec()).ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::{OriginCheck, SETTLE};

    #[test]
    fn a_file_is_read_once_and_a_write_is_noticed() {
        let dir = std::env::temp_dir().join(format!("cork-origin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bottle.toml");
        std::fs::write(&path, "version = 1\n").expect("write");
        let digest = cork_agent::manifest_digest("version = 1\n");
        let origin = path.to_str().expect("utf-8 path");
        let check = OriginCheck::default();
        // Just written: it holds, but could still change within its timestamp's tick.
        assert!(check.holds(origin, &digest));
        assert!(
            check.seen.lock().expect("lock").is_none(),
            "too fresh to remember"
        );
        let later = SystemTime::now() + SETTLE;
        assert!(check.holds_at(origin, &digest, later));
        assert!(check.seen.lock().expect("lock").is_some(), "identity kept");
        assert!(
            check.holds_at(origin, &digest, later),
            "the kept identity answers"
        );
        // Same length, other text: the change time moves.
        std::fs::write(&path, "version = 2\n").expect("rewrite");
        assert!(!check.holds_at(origin, &digest, later + SETTLE));
        assert!(!check.holds("bottle.toml", &digest), "relative: never");
        assert!(
            !check.holds(dir.to_str().expect("utf-8"), &digest),
            "a directory: never"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
