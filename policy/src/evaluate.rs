//! A pure reference model of the kernel's decision, for tests here and in other crates
//! (and for `cork` to explain a verdict without a kernel).
//!
//! It mirrors the BPF programs: normalise IPv4-mapped IPv6 destinations to IPv4, one
//! longest-prefix-match lookup, then a scan of that entry's slots in which any deny wins
//! over any allow, and no match means deny.

use std::net::IpAddr;

use crate::plan::KernelPlan;
use crate::ports::Proto;
use crate::prefix::normalise_addr;
use crate::rule::Action;

/// The outcome for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The rule that decided, or `None` for the default deny (`CORK_RULE_NONE`).
    pub rule_id: Option<u16>,
}

/// Decides traffic of protocol `proto` to `dst:port` as the kernel would with `plan`
/// loaded. `proto` is the packet's protocol, `Tcp` or `Udp`; `Any` is not a packet
/// protocol and only matches slots whose protocol is `Any`.
pub fn evaluate(plan: &KernelPlan, dst: IpAddr, proto: Proto, port: u16) -> Verdict {
    let dst = normalise_addr(dst);
    let Some(entry) = plan.covering(dst) else {
        return Verdict {
            action: Action::Deny,
            rule_id: None,
        };
    };
    let first = |action: Action| {
        entry
            .slots
            .iter()
            .find(|s| s.action == action && s.matches(proto, port))
            .map(|s| Verdict {
                action,
                rule_id: Some(s.rule_id),
            })
    };
    first(Action::Deny)
        .or_else(|| first(Action::Allow))
        .unwrap_or(Verdict {
            action: Action::Deny,
            rule_id: None,
        })
}
