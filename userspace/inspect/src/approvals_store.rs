//! The approvals registry kept across a daemon restart, in one small JSON file of the
//! daemon's state directory (written whole — temporary file, then rename — after every
//! change, 0600). Three things must outlive a daemon: the next id, so that an operator
//! reading an old list never approves a new request that happens to reuse its number;
//! remembered approvals, which an operator granted for a while; and the holds pending
//! when it went, whose clients' connections went with it — each reported once by the
//! next daemon (`approval_lost`) so that no `held` event is left without its end.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::approvals::HeldRequest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reading the approvals file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the approvals file {path} is not what cork writes (fix or remove it)")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the approvals file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What the file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Saved {
    /// The last id given out.
    pub next: u64,
    pub pending: Vec<HeldRequest>,
    pub remembered: Vec<SavedApproval>,
}

/// A remembered approval, its expiry on the wall clock (an `Instant` means nothing to
/// the next process).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedApproval {
    pub bottle: String,
    pub host: String,
    pub method: String,
    pub route: String,
    pub by: u32,
    pub until_unix_ms: u64,
}

/// The saved registry at `path`; an empty one when there is no file yet.
pub(crate) fn load(path: &Path) -> Result<Saved, StoreError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Saved::default()),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&text).map_err(|source| StoreError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `saved` to `path` whole: a reader (the next daemon) sees the old file or the
/// new one, never half of one.
pub(crate) fn save(path: &Path, saved: &Saved) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_vec(saved).map_err(|e| err(e.into()))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(&text).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    // The rename itself lasts only once the directory is on disk.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

/// `until` (a monotonic deadline) on the wall clock, in ms since the epoch.
pub(crate) fn to_wall(until: Instant, now: Instant) -> u64 {
    let left = until.saturating_duration_since(now);
    let wall = SystemTime::now() + left;
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A wall-clock deadline as a monotonic one from `now`; `None` once it has passed.
pub(crate) fn from_wall(until_unix_ms: u64, now: Instant) -> Option<Instant> {
    let until = UNIX_EPOCH + Duration::from_millis(until_unix_ms);
    let left = until.duration_since(SystemTime::now()).ok()?;
    (!left.is_zero()).then(|| now + left)
}
