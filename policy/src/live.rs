//! A running bottle's policy across updates ([`LivePolicy`]): the generation in force and
//! the one before it, each in one of the kernel's two policy slots; what an update may
//! change ([`check_update`]); and how a kernel rule id names its slot
//! ([`RULE_SLOT_BIT`]).
//!
//! Generations are numbered from 0 (the policy the bottle was created with); generation
//! `n` lives in kernel slot `n % 2`. The kernel reports rule ids with the slot bit of the
//! slot that decided, so a record read after an update still names the rule of the
//! generation that judged it (the previous generation is kept for exactly that).

use std::sync::{Arc, RwLock};

use crate::rule::Action;
use crate::{Policy, RULE_ID_NONE, RuleId};

/// Set in every rule id written to the kernel's slot-1 maps (`CORK_RULE_SLOT_BIT`). Rule
/// ids are below [`crate::MAX_RULES`] (1 << 20), so the bit is free.
pub const RULE_SLOT_BIT: u32 = 1 << 30;

/// A kernel policy slot: 0 or 1.
pub type PolicySlot = u8;

/// `rule_id` as written to the maps of `slot`.
pub fn tag_rule(rule_id: RuleId, slot: PolicySlot) -> u32 {
    if rule_id == RULE_ID_NONE || slot == 0 {
        rule_id
    } else {
        rule_id | RULE_SLOT_BIT
    }
}

/// A kernel-reported rule id as (slot, rule id of that slot's policy).
pub fn split_rule(raw: u32) -> (PolicySlot, RuleId) {
    if raw == RULE_ID_NONE {
        (0, raw)
    } else {
        (u8::from(raw & RULE_SLOT_BIT != 0), raw & !RULE_SLOT_BIT)
    }
}

/// One generation: its number and its policy.
#[derive(Debug, Clone)]
pub struct Generation {
    pub number: u64,
    pub policy: Arc<Policy>,
}

impl Generation {
    /// The kernel slot this generation lives in.
    pub fn slot(&self) -> PolicySlot {
        (self.number % 2) as PolicySlot
    }
}

/// A running bottle's policy, swapped as a whole by an update. Readers take a
/// [`Generation`] (an `Arc`) and decide by it alone, so one decision never mixes two.
///
/// An update first [`LivePolicy::stage`]s the next generation in the slot the kernel does
/// not read (from then on kernel records from that slot are named by it), flips the
/// kernel's slot, then [`LivePolicy::commit`]s: userspace follows.
pub struct LivePolicy {
    slots: RwLock<Slots>,
}

impl std::fmt::Debug for LivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current();
        f.debug_struct("LivePolicy")
            .field("bottle", &current.policy.name)
            .field("generation", &current.number)
            .finish()
    }
}

struct Slots {
    /// The generation in force.
    current: Generation,
    /// The generation in the other kernel slot: the previous one, or the staged next one.
    other: Option<Generation>,
}

impl LivePolicy {
    /// A bottle's first policy: generation 0, slot 0.
    pub fn new(policy: Arc<Policy>) -> Self {
        LivePolicy {
            slots: RwLock::new(Slots {
                current: Generation { number: 0, policy },
                other: None,
            }),
        }
    }

    /// A bottle's policy taken over by a restarted agent: generation `number` (so slot
    /// `number % 2`), with no record of the one before it.
    pub fn resume(policy: Arc<Policy>, number: u64) -> Self {
        LivePolicy {
            slots: RwLock::new(Slots {
                current: Generation { number, policy },
                other: None,
            }),
        }
    }

    /// The generation in force.
    pub fn current(&self) -> Generation {
        self.read().current.clone()
    }

    /// Puts `policy` in the other slot as the next generation (numbered one past the
    /// current one) and returns it; the current generation stays in force.
    pub fn stage(&self, policy: Arc<Policy>) -> Generation {
        let mut slots = self.write();
        let next = Generation {
            number: slots.current.number + 1,
            policy,
        };
        slots.other = Some(next.clone());
        next
    }

    /// Makes the staged generation `next` the one in force (the kernel reads its slot
    /// now); the one it replaces stays named for its slot. Anything but the staged
    /// generation is ignored.
    pub fn commit(&self, next: &Generation) {
        let mut slots = self.write();
        let staged = slots
            .other
            .as_ref()
            .is_some_and(|o| o.number == next.number);
        if staged && let Some(other) = slots.other.take() {
            let previous = std::mem::replace(&mut slots.current, other);
            slots.other = Some(previous);
        }
    }

    /// The policy that `slot` holds (or last held).
    pub fn in_slot(&self, slot: PolicySlot) -> Option<Arc<Policy>> {
        let slots = self.read();
        [Some(&slots.current), slots.other.as_ref()]
            .into_iter()
            .flatten()
            .find(|g| g.slot() == slot)
            .map(|g| g.policy.clone())
    }

    /// The manifest id (`egress.allow[0]`) of a kernel-reported rule id.
    pub fn kernel_rule_name(&self, raw: u32) -> Option<String> {
        let (slot, id) = split_rule(raw);
        self.in_slot(slot)?.rule(id).map(|r| r.id.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slots> {
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Slots> {
        self.slots.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a policy cannot replace a running bottle's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefusal {
    #[error("the manifest names bottle {new:?}, the running bottle is {old:?}")]
    Name { old: String, new: String },
    #[error(
        "{section} differs from the running bottle's: an update changes egress rules, \
         domains, host ports and unix names; recreate the bottle to change {section}"
    )]
    Section { section: &'static str },
    #[error(
        "the update {} the inspecting proxy (the bottle was created {}): recreate the bottle",
        if *.now_needed { "needs" } else { "drops every allowed name, and with it" },
        if *.now_needed { "without one: no name was allowed" } else { "with one" }
    )]
    InspectingProxy { now_needed: bool },
}

/// Whether a bottle's proxies can follow `new` without restarting: the same bottle, and
/// the same settings of everything built once per bottle (DNS proxy limits and
/// upstreams, TLS roots, credentials, DLP scanner, the command's environment and files).
pub fn check_update(old: &Policy, new: &Policy) -> Result<(), UpdateRefusal> {
    if old.name != new.name {
        return Err(UpdateRefusal::Name {
            old: old.name.clone(),
            new: new.name.clone(),
        });
    }
    let same = [
        ("[dns]", old.dns == new.dns),
        ("[tls]", old.tls == new.tls),
        ("[[credentials]]", old.credentials == new.credentials),
        ("[dlp]", old.dlp == new.dlp),
        ("[env]", old.env == new.env),
        ("[files]", old.files == new.files),
    ];
    if let Some((section, _)) = same.iter().find(|(_, same)| !same) {
        return Err(UpdateRefusal::Section { section });
    }
    let (was, now) = (needs_inspecting_proxy(old), needs_inspecting_proxy(new));
    if was != now {
        return Err(UpdateRefusal::InspectingProxy { now_needed: now });
    }
    Ok(())
}

/// A bottle runs an inspecting proxy when some name is allowed.
pub fn needs_inspecting_proxy(policy: &Policy) -> bool {
    policy.domains.iter().any(|d| d.action == Action::Allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(body: &str) -> Arc<Policy> {
        let src = format!("version = 1\n[bottle]\nname = \"b\"\n{body}");
        Arc::new(crate::compile(&src, "m.toml").expect("valid manifest"))
    }

    #[test]
    fn rule_ids_carry_their_slot() {
        assert_eq!(tag_rule(5, 0), 5);
        assert_eq!(split_rule(tag_rule(5, 1)), (1, 5));
        assert_eq!(split_rule(tag_rule(5, 0)), (0, 5));
        assert_eq!(tag_rule(RULE_ID_NONE, 1), RULE_ID_NONE);
        assert_eq!(split_rule(RULE_ID_NONE), (0, RULE_ID_NONE));
        let max = (crate::MAX_RULES - 1) as u32;
        assert_eq!(split_rule(tag_rule(max, 1)), (1, max));
    }

    #[test]
    fn generations_alternate_slots_and_keep_the_previous_one() {
        let a = policy("[egress]\nallow = [{ cidr = \"198.51.100.1/32\", ports = [\"80\"] }]\n");
        let b = policy("[egress]\nallow = [{ cidr = \"198.51.100.2/32\", ports = [\"81\"] }]\n");
        let live = LivePolicy::new(a.clone());
        assert_eq!(live.current().number, 0);
        assert_eq!(live.current().slot(), 0);
        assert!(live.in_slot(1).is_none());
        let g = live.stage(b.clone());
        assert_eq!((g.number, g.slot()), (1, 1));
        // Staged: named for the kernel's slot 1 already, not yet in force.
        assert!(Arc::ptr_eq(&live.current().policy, &a));
        assert!(Arc::ptr_eq(&live.in_slot(1).expect("slot 1"), &b));
        live.commit(&g);
        assert!(Arc::ptr_eq(&live.current().policy, &b));
        assert!(Arc::ptr_eq(&live.in_slot(0).expect("slot 0"), &a));
        assert_eq!(
            live.kernel_rule_name(tag_rule(0, 1)).as_deref(),
            Some("egress.allow[0]")
        );
        let g = live.stage(a.clone());
        assert_eq!((g.number, g.slot()), (2, 0));
        live.commit(&g);
        assert_eq!(live.current().number, 2);
        assert!(Arc::ptr_eq(&live.in_slot(1).expect("slot 1"), &b));
    }

    #[test]
    fn a_resumed_policy_keeps_its_generation_and_slot() {
        let a = policy("[egress]\nallow = [{ cidr = \"198.51.100.1/32\", ports = [\"80\"] }]\n");
        let live = LivePolicy::resume(a.clone(), 3);
        assert_eq!((live.current().number, live.current().slot()), (3, 1));
        assert!(live.in_slot(0).is_none());
        let g = live.stage(a);
        assert_eq!((g.number, g.slot()), (4, 0));
    }

    #[test]
    fn updates_change_rules_only() {
        let base = policy("[egress]\nallow = [{ cidr = \"198.51.100.1/32\", ports = [\"80\"] }]\n");
        let rules = policy(
            "[egress]\nallow = [{ cidr = \"198.51.100.0/24\", ports = [\"80\"] }]\n\
             [loopback]\nhost_ports = [8080]\n",
        );
        assert_eq!(check_update(&base, &rules), Ok(()));
        let dns = policy(
            "[egress]\nallow = [{ cidr = \"198.51.100.1/32\", ports = [\"80\"] }]\n\
             [dns]\nmax_ttl = 30\n",
        );
        let e = check_update(&base, &dns).expect_err("dns differs");
        assert_eq!(e, UpdateRefusal::Section { section: "[dns]" });
        assert!(
            e.to_string()
                .contains("recreate the bottle to change [dns]"),
            "{e}"
        );
        let other = Arc::new(
            crate::compile("version = 1\n[bottle]\nname = \"c\"\n", "m.toml").expect("valid"),
        );
        assert!(matches!(
            check_update(&base, &other),
            Err(UpdateRefusal::Name { .. })
        ));
    }
}
