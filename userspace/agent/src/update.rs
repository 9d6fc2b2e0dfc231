//! [`BottleRuntime::update`]: a running bottle's policy replaced as one generation.
//!
//! The kernel keeps two slots of policy maps and reads the live one through one word
//! (`cork_gen`, see `ebpf/include/cork_maps.h`). An update:
//! 1. checks that the new policy changes only what can change under running proxies
//!    (egress rules, domains, host ports, unix names: [`cork_policy::check_update`]);
//! 2. empties the other slot, writes the new plan into it and reads it back;
//! 3. names that slot's kernel records by the new generation ([`LivePolicy::stage`]);
//! 4. holds the DNS learner and carries every learned address whose answer is still
//!    valid and whose name the new policy still allows into the new slot;
//! 5. reads the slot back once more and flips `cork_gen`: from that write on, every
//!    decision is the new policy's, and none saw a mix;
//! 6. the learner, the DNS proxy and the inspecting proxy follow ([`LivePolicy::commit`]);
//! 7. after a grace period in which no decision can still be reading the old slot, empties it.
//!
//! Anything failing before step 5 leaves the old generation in force, untouched. Open
//! connections stay open: their connect() was judged under the generation in force then
//! (the skb program lets a vetted socket talk to what it connected to), as a firewall
//! keeps established flows when its rule set is replaced; new connects go by the new one.

use std::sync::Arc;
use std::time::Duration;

use cork_audit::{EventHead, SinkError};
use cork_bpf::learned::{LearnError, MapLearner};
use cork_policy::{Generation, LivePolicy, Policy, PolicySlot, UpdateRefusal, check_update};
use serde::Serialize;

use crate::runtime::{BottleRuntime, Fence};

/// How long after the flip the old slot is emptied. The programs that read it run without
/// sleeping, for microseconds; this is orders of magnitude more.
const OLD_SLOT_GRACE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Refused(#[from] UpdateRefusal),
    #[error(
        "bottle {0} is a VM bottle: its nftables rules do not follow policy generations yet; \
         recreate it to change its policy"
    )]
    VmBottle(String),
    #[error("bottle {0} is not running (not started yet, or stopped)")]
    NotRunning(String),
    #[error(
        "the new manifest allows names but the bottle has no DNS upstream: set [dns] upstream \
         when the bottle is created"
    )]
    NoUpstream,
    #[error("staging the new policy in the kernel (the old policy stays in force)")]
    Stage(#[source] cork_bpf::BpfError),
    #[error("carrying learned addresses into the new policy (the old policy stays in force)")]
    Learned(#[source] LearnError),
    #[error("switching the kernel to the new policy (the old policy stays in force)")]
    Switch(#[source] cork_bpf::BpfError),
    #[error(transparent)]
    Audit(#[from] SinkError),
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Updated {
    pub old_generation: u64,
    pub new_generation: u64,
    /// Learned DNS addresses still valid and still allowed, carried into the new policy.
    pub learned_carried: usize,
    /// SHA-256 of the manifest text, hex.
    pub manifest_sha256: String,
}

/// The `policy_updated` lifecycle event.
#[derive(Debug, Clone, Serialize)]
struct PolicyUpdatedEvent<'a> {
    #[serde(flatten)]
    head: EventHead,
    #[serde(flatten)]
    updated: &'a Updated,
    detail: String,
}

/// SHA-256 of manifest text, as lowercase hex (the `manifest_sha256` of events).
pub fn manifest_digest(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    cork_audit::chain::hex(digest.as_ref())
}

impl BottleRuntime {
    /// Replaces the running bottle's policy with `policy` as one generation (see the
    /// module docs); `manifest_sha256` names the manifest in the lifecycle event.
    /// Blocks (map writes, a 100 ms grace): call it off the async reactor.
    pub fn update(
        &mut self,
        policy: Arc<Policy>,
        manifest_sha256: &str,
    ) -> Result<Updated, UpdateError> {
        let old = self.live.current();
        check_update(&old.policy, &policy)?;
        if matches!(self.fence, Fence::Tap(_)) {
            return Err(UpdateError::VmBottle(self.key.to_string()));
        }
        if self.upstreams.is_empty() && !policy.domains.is_empty() {
            return Err(UpdateError::NoUpstream);
        }
        let Some(services) = &self.services else {
            return Err(UpdateError::NotRunning(self.key.to_string()));
        };
        let learner = services.learner.clone();
        let Some(enforcement) = self.fence.enforcement() else {
            return Err(UpdateError::NotRunning(self.key.to_string()));
        };
        let slot = ((old.number + 1) % 2) as PolicySlot;
        let applied = apply(enforcement, &self.live, learner.as_deref(), &policy, slot);
        let (next, learned_carried) = match applied {
            Ok(done) => done,
            Err(e) => {
                // Not live: empty it again so a refused policy holds no kernel memory.
                if let Err(clear) = enforcement.clear(slot) {
                    tracing::warn!("emptying the refused policy's slot: {clear}");
                }
                return Err(e);
            }
        };
        std::thread::sleep(OLD_SLOT_GRACE);
        if let Err(e) = enforcement.clear(old.slot()) {
            tracing::warn!("emptying the previous policy's slot: {e}");
        }
        let updated = Updated {
            old_generation: old.number,
            new_generation: next.number,
            learned_carried,
            manifest_sha256: manifest_sha256.to_owned(),
        };
        self.write_event(&PolicyUpdatedEvent {
            head: EventHead::now(&self.name, "cork", "policy_updated"),
            updated: &updated,
            detail: format!(
                "bottle {}: policy generation {} replaced {} in one switch; {} learned \
                 addresses carried over; connections already open stay open",
                self.key, next.number, old.number, learned_carried
            ),
        })?;
        Ok(updated)
    }
}

/// Steps 2–6 of the module docs.
fn apply(
    enforcement: &mut cork_bpf::Enforcement,
    live: &LivePolicy,
    learner: Option<&MapLearner>,
    policy: &Arc<Policy>,
    slot: PolicySlot,
) -> Result<(Generation, usize), UpdateError> {
    let plan = policy.plan();
    enforcement.stage(plan, slot).map_err(UpdateError::Stage)?;
    let next = live.stage(policy.clone());
    let mut held = learner.map(MapLearner::begin_update);
    let carried = match &mut held {
        Some(h) => h.carry_over(policy, slot).map_err(UpdateError::Learned)?,
        None => 0,
    };
    enforcement
        .switch(plan, slot)
        .map_err(UpdateError::Switch)?;
    live.commit(&next);
    if let Some(h) = held {
        h.commit();
    }
    Ok((next, carried))
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_are_sha256_hex() {
        assert_eq!(
            super::manifest_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
