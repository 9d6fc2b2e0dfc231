//! Held requests and the operator's decisions on them. A request whose DLP findings call
//! for `supervise`, or that an `[[egress.ask]]` rule takes, is held by the proxy (nothing of it sent upstream) under an id in an
//! [`Approvals`] registry; an operator approves or denies it through the daemon, or the
//! bottle's `dlp.approval_timeout` denies it. An approval may be remembered for a while:
//! the same bottle, host, method and route then goes through without a new hold.
//!
//! One registry serves every bottle of a daemon, kept across a restart in the store the
//! daemon gives it ([`Approvals::persistent`]); `cork run` has none (nobody to ask), and its proxy
//! refuses what it would hold, as `block` would.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::approvals_store as store;
pub use crate::approvals_store::{RegistryStore, StoreError};

/// What a held request is, as `GET /v1/approvals` shows it. Never a secret: the path has
/// no query, findings are detector names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRequest {
    pub id: String,
    pub bottle: String,
    pub host: String,
    pub method: String,
    /// The path without its query.
    pub path: String,
    /// What a remembered approval is keyed by besides host and method: the matched
    /// route's manifest place (`route@LINE:COL`), or the path when no route matched.
    pub route: String,
    pub detectors: Vec<String>,
    /// The `[[egress.ask]]` rule that holds it (`egress.ask[0]`); absent when DLP
    /// findings made the hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Wall-clock RFC 3339 time the hold began.
    pub held_at: String,
    /// Seconds the hold waits before it is denied.
    pub timeout_s: u64,
}

/// An operator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An operator (peer uid `by`) approved it.
    Approved { by: u32 },
    /// An operator (peer uid `by`) denied it.
    Denied { by: u32 },
    /// Nobody decided in time.
    TimedOut,
}

/// `decide` named an id that is not held (never was, or already decided or timed out).
#[derive(Debug, thiserror::Error)]
#[error("no held request has id {id:?} (decided, timed out, or never held)")]
pub struct UnknownId {
    pub id: String,
}

/// The bottle, host, method and route a remembered approval covers.
type Key = (String, String, String, String);

struct Pending {
    info: HeldRequest,
    answer: oneshot::Sender<Outcome>,
}

struct Remembered {
    until: Instant,
    by: u32,
}

#[derive(Default)]
struct Inner {
    next: u64,
    pending: BTreeMap<u64, Pending>,
    remembered: BTreeMap<Key, Remembered>,
}

/// The registry: pending holds by id and remembered approvals with their expiry.
#[derive(Default)]
pub struct Approvals {
    inner: Mutex<Inner>,
    /// Where the registry is kept across restarts ([`Approvals::persistent`]).
    store: Option<Box<dyn RegistryStore>>,
}

/// One hold, waiting for its outcome ([`Hold::wait`]).
pub struct Hold<'a> {
    registry: &'a Approvals,
    id: u64,
    answer: oneshot::Receiver<Outcome>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Approvals")
            .field("pending", &inner.pending.len())
            .field("remembered", &inner.remembered.len())
            .finish()
    }
}

impl Approvals {
    /// A registry in memory only (tests; a daemon uses [`Approvals::persistent`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry kept in `store` (see [`crate::approvals_store`]): ids go on from the
    /// last one given out, remembered approvals that have not expired come back, and the
    /// holds that were pending when the last process stopped are returned — lost, their
    /// clients gone with it — for the caller to report, and forgotten.
    pub fn persistent(
        store: Box<dyn RegistryStore>,
    ) -> Result<(Self, Vec<HeldRequest>), StoreError> {
        let saved = store::load(store.as_ref())?;
        let now = Instant::now();
        let remembered = saved
            .remembered
            .into_iter()
            .filter_map(|a| {
                let until = store::from_wall(a.until_unix_ms, now)?;
                let key = (a.bottle, a.host, a.method, a.route);
                Some((key, Remembered { until, by: a.by }))
            })
            .collect();
        let this = Approvals {
            inner: Mutex::new(Inner {
                next: saved.next,
                pending: BTreeMap::new(),
                remembered,
            }),
            store: Some(store),
        };
        this.persist(&this.lock())?;
        Ok((this, saved.pending))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the registry to its file, if it has one.
    fn persist(&self, inner: &Inner) -> Result<(), StoreError> {
        let Some(target) = &self.store else {
            return Ok(());
        };
        let now = Instant::now();
        let saved = store::Saved {
            next: inner.next,
            pending: inner.pending.values().map(|p| p.info.clone()).collect(),
            remembered: inner
                .remembered
                .iter()
                .map(|((bottle, host, method, route), r)| store::SavedApproval {
                    bottle: bottle.clone(),
                    host: host.clone(),
                    method: method.clone(),
                    route: route.clone(),
                    by: r.by,
                    until_unix_ms: store::to_wall(r.until, now),
                })
                .collect(),
        };
        store::save(target.as_ref(), &saved)
    }

    /// [`Approvals::persist`] after a change that has happened whatever the disk says:
    /// a failure is logged (the registry in memory stays right; only a restart would
    /// lose it).
    fn persist_or_warn(&self, inner: &Inner) {
        if let Err(e) = self.persist(inner) {
            tracing::warn!("keeping the approvals registry: {e}");
        }
    }

    /// The uid that approved this request's kind for a while, if that while lasts;
    /// an expired approval is forgotten here.
    pub fn remembered(&self, req: &HeldRequest, now: Instant) -> Option<u32> {
        let key = key_of(req);
        let mut inner = self.lock();
        match inner.remembered.get(&key) {
            Some(r) if r.until > now => Some(r.by),
            Some(_) => {
                inner.remembered.remove(&key);
                self.persist_or_warn(&inner);
                None
            }
            None => None,
        }
    }

    /// Holds `req` (its `id` is assigned here and returned in the hold's info).
    pub fn hold(&self, mut req: HeldRequest) -> (HeldRequest, Hold<'_>) {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        req.id = id.to_string();
        inner.pending.insert(
            id,
            Pending {
                info: req.clone(),
                answer: tx,
            },
        );
        self.persist_or_warn(&inner);
        let hold = Hold {
            registry: self,
            id,
            answer: rx,
        };
        (req, hold)
    }

    /// Every held request, oldest first.
    pub fn pending(&self) -> Vec<HeldRequest> {
        self.lock()
            .pending
            .values()
            .map(|p| p.info.clone())
            .collect()
    }

    /// Decides hold `id` as peer `by`; an approval `remember`ed covers the same bottle,
    /// host, method and route until then. Returns what was held.
    pub fn decide(
        &self,
        id: &str,
        verdict: Verdict,
        by: u32,
        remember: Option<Duration>,
        now: Instant,
    ) -> Result<HeldRequest, UnknownId> {
        let unknown = || UnknownId { id: id.to_owned() };
        let n: u64 = id.parse().map_err(|_| unknown())?;
        let mut inner = self.lock();
        let pending = inner.pending.remove(&n).ok_or_else(unknown)?;
        let outcome = match verdict {
            Verdict::Approve => {
                if let Some(d) = remember {
                    inner
                        .remembered
                        .insert(key_of(&pending.info), Remembered { until: now + d, by });
                }
                Outcome::Approved { by }
            }
            Verdict::Deny => Outcome::Denied { by },
        };
        self.persist_or_warn(&inner);
        // The holder may have gone (the bottle's client hung up): the decision still
        // stands for a remembered approval, and the operator still gets the answer.
        let _ = pending.answer.send(outcome);
        Ok(pending.info)
    }
}

impl Hold<'_> {
    /// Waits for a decision, at most `timeout`; a timeout removes the hold first, so a
    /// late decision finds no such id instead of deciding nothing.
    pub async fn wait(mut self, timeout: Duration) -> Outcome {
        match tokio::time::timeout(timeout, &mut self.answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) | Err(_) => {
                let removed = self.registry.forget(self.id);
                if removed {
                    return Outcome::TimedOut;
                }
                // Decided between the timer and the lock: that decision stands.
                self.answer.try_recv().unwrap_or(Outcome::TimedOut)
            }
        }
    }
}

impl Drop for Hold<'_> {
    /// A hold whose request went away (the client hung up) is no longer pending.
    fn drop(&mut self) {
        self.registry.forget(self.id);
    }
}

impl Approvals {
    /// Removes hold `id` if it is still pending; whether it was.
    fn forget(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let removed = inner.pending.remove(&id).is_some();
        if removed {
            self.persist_or_warn(&inner);
        }
        removed
    }
}

fn key_of(req: &HeldRequest) -> Key {
    (
        req.bottle.clone(),
        req.host.clone(),
        req.method.clone(),
        req.route.clone(),
    )
}

#[cfg(test)]
#[path = "approvals_tests.rs"]
mod tests;
