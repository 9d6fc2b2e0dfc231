//! The approvals registry kept across a daemon restart: what is saved (one small JSON
//! document, rewritten after every change) and how; where it lives is the daemon's
//! ([`RegistryStore`]: a file of its state directory, written whole, 0600). Three things must outlive a daemon: the next id, so that an operator
//! reading an old list never approves a new request that happens to reuse its number;
//! remembered approvals, which an operator granted for a while; and the holds pending
//! when it went, whose clients' connections went with it — each reported once by the
//! next daemon (`approval_lost`) so that no `held` event is left without its end.

use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::approvals::HeldRequest;

/// Where the registry is kept: the daemon's state directory gives one
/// (`cork_daemon::state_dir::ApprovalsFile`, written whole as its bottles' files are).
pub trait RegistryStore: Send + Sync {
    /// Where it is, for errors.
    fn place(&self) -> String;
    /// What was saved; `None` before the first save.
    fn load(&self) -> io::Result<Option<Vec<u8>>>;
    /// Replaces what was saved, whole or not at all.
    fn save(&self, bytes: &[u8]) -> io::Result<()>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reading the approvals file {place}")]
    Read {
        place: String,
        #[source]
        source: io::Error,
    },
    #[error("the approvals file {place} is not what cork writes (fix or remove it)")]
    Parse {
        place: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the approvals file {place}")]
    Write {
        place: String,
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

/// The registry `store` holds; an empty one before the first save.
pub(crate) fn load(store: &dyn RegistryStore) -> Result<Saved, StoreError> {
    let bytes = store.load().map_err(|source| StoreError::Read {
        place: store.place(),
        source,
    })?;
    match bytes {
        None => Ok(Saved::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Parse {
            place: store.place(),
            source,
        }),
    }
}

/// Writes `saved` to `store`.
pub(crate) fn save(store: &dyn RegistryStore, saved: &Saved) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        place: store.place(),
        source,
    };
    let bytes = serde_json::to_vec(saved).map_err(|e| err(e.into()))?;
    store.save(&bytes).map_err(err)
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
