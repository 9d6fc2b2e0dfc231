//! What the kernel holds for an address learned from a DNS answer: one host prefix whose
//! value carries the static slots that already apply to that address (those of the longest
//! manifest prefix containing it, which include every enclosing prefix's) followed by the
//! slots of the domain rules that allowed the name. The static part keeps applying after
//! the learned part expires, so a learned entry never hides a manifest rule — a `cidr` deny
//! still wins over an allowed name that resolves into it.

use std::net::IpAddr;

use crate::plan::{KernelPlan, MAX_SLOTS_PER_PREFIX, PrefixEntry, Slot};
use crate::prefix::{Prefix, normalise_addr};

/// A host entry for a learned address: `slots[..static_count]` static, the rest learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedEntry {
    pub prefix: Prefix,
    pub slots: Vec<Slot>,
    pub static_count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LearnError {
    #[error(
        "{addr} would need {needed} rule slots ({static_count} from prefix rules + the name's), \
         more than the kernel's {MAX_SLOTS_PER_PREFIX}"
    )]
    TooManySlots {
        addr: IpAddr,
        needed: usize,
        static_count: usize,
    },
}

impl KernelPlan {
    /// The longest static prefix entry containing `addr` (IPv4-mapped means IPv4).
    pub fn covering(&self, addr: IpAddr) -> Option<&PrefixEntry> {
        let addr = normalise_addr(addr);
        let entries = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        entries
            .iter()
            .filter(|e| e.prefix.contains(addr))
            .max_by_key(|e| e.prefix.len())
    }

    /// The entry to install when a DNS answer teaches the kernel `addr` for a name whose
    /// allow rules have `learned` slots (see `Policy::allowed_slots`).
    pub fn learned_entry(
        &self,
        addr: IpAddr,
        learned: &[Slot],
    ) -> Result<LearnedEntry, LearnError> {
        let addr = normalise_addr(addr);
        let host_len = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = Prefix::new(addr, host_len).expect("a host prefix has no host bits");
        let mut slots: Vec<Slot> = self
            .covering(addr)
            .map(|e| e.slots.clone())
            .unwrap_or_default();
        let static_count = slots.len();
        for s in learned {
            if !slots.contains(s) {
                slots.push(*s);
            }
        }
        if slots.len() > MAX_SLOTS_PER_PREFIX {
            return Err(LearnError::TooManySlots {
                addr,
                needed: slots.len(),
                static_count,
            });
        }
        Ok(LearnedEntry {
            prefix,
            slots,
            static_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile;
    use crate::evaluate::evaluate;
    use crate::plan::Redirect;
    use crate::ports::Proto;
    use crate::rule::Action;

    const MANIFEST: &str = r#"
version = 1
[bottle]
name = "learn"
[[egress.allow]]
cidr = "198.51.100.0/24"
ports = [443]
[[egress.deny]]
cidr = "198.51.100.66/32"
"#;

    fn learned_slot(port: u16) -> Slot {
        Slot {
            port_lo: port,
            port_hi: port,
            proto: Proto::Tcp,
            action: Action::Allow,
            rule_id: 9,
            redirect: Redirect::Web,
        }
    }

    #[test]
    fn learned_entry_keeps_the_static_slots_first() {
        let plan = compile(MANIFEST, "m.toml").unwrap().kernel_plan();
        let e = plan
            .learned_entry("198.51.100.77".parse().unwrap(), &[learned_slot(8443)])
            .unwrap();
        assert_eq!(e.prefix.to_string(), "198.51.100.77/32");
        assert_eq!(e.static_count, 1);
        assert_eq!(e.slots.len(), 2);
        assert_eq!(e.slots[1], learned_slot(8443));
    }

    #[test]
    fn a_denied_prefix_stays_denied_for_a_learned_name() {
        let plan = compile(MANIFEST, "m.toml").unwrap().kernel_plan();
        let e = plan
            .learned_entry("198.51.100.66".parse().unwrap(), &[learned_slot(443)])
            .unwrap();
        // The deny slot is static and first; a deny anywhere wins in the kernel scan.
        assert!(
            e.slots[..e.static_count]
                .iter()
                .any(|s| s.action == Action::Deny)
        );
        let mut with = plan.clone();
        with.v4.push(PrefixEntry {
            prefix: e.prefix,
            slots: e.slots.clone(),
        });
        let v = evaluate(&with, "198.51.100.66".parse().unwrap(), Proto::Tcp, 443);
        assert_eq!(v.action, Action::Deny);
    }

    #[test]
    fn outside_every_prefix_only_the_learned_slots_apply() {
        let plan = compile(MANIFEST, "m.toml").unwrap().kernel_plan();
        let e = plan
            .learned_entry("2001:db8::10".parse().unwrap(), &[learned_slot(443)])
            .unwrap();
        assert_eq!(e.static_count, 0);
        assert_eq!(e.prefix.to_string(), "2001:db8::10/128");
    }

    #[test]
    fn too_many_slots_is_refused() {
        let plan = compile(MANIFEST, "m.toml").unwrap().kernel_plan();
        let many: Vec<Slot> = (1..=16).map(learned_slot).collect();
        let err = plan
            .learned_entry("198.51.100.77".parse().unwrap(), &many)
            .unwrap_err();
        assert!(
            matches!(err, LearnError::TooManySlots { needed: 17, .. }),
            "{err}"
        );
    }
}
