//! A pure reference model of the kernel's decision, for tests here and in other crates
//! (and for `cork` to explain a verdict without a kernel).
//!
//! It mirrors the BPF programs: normalise IPv4-mapped IPv6 destinations to IPv4, one
//! longest-prefix-match lookup, then a scan of that entry's slots in which any deny wins
//! over any allow, and no match means deny.

use std::net::IpAddr;

use crate::plan::{KernelPlan, RuleId};
use crate::ports::Proto;
use crate::prefix::normalise_addr;
use crate::rule::Action;

/// The outcome for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The rule that decided, or `None` for the default deny (`CORK_RULE_NONE`).
    pub rule_id: Option<RuleId>,
    /// An allowed TCP connection goes to the inspecting proxy instead of straight out.
    /// Always `false` unless `action` is [`Action::Allow`] and the protocol TCP.
    pub redirect: bool,
}

impl Verdict {
    fn deny(rule_id: Option<RuleId>) -> Self {
        Self {
            action: Action::Deny,
            rule_id,
            redirect: false,
        }
    }
}

/// Decides traffic of protocol `proto` to `dst:port` as the kernel would with `plan`
/// loaded. `proto` is the packet's protocol, `Tcp` or `Udp`; `Any` is not a packet
/// protocol and only matches slots whose protocol is `Any`.
///
/// After deny slots, UDP that a matching allow slot would redirect is denied, naming that
/// slot's rule: the proxy takes TCP only, and refusing QUIC makes HTTP/3 clients fall
/// back to TCP, where they can be inspected. An allowed TCP connection is redirected when
/// any matching allow slot redirects its port.
pub fn evaluate(plan: &KernelPlan, dst: IpAddr, proto: Proto, port: u16) -> Verdict {
    let dst = normalise_addr(dst);
    let Some(entry) = plan.covering(dst) else {
        return Verdict::deny(None);
    };
    let hits = |action: Action| {
        entry
            .slots
            .iter()
            .filter(move |s| s.action == action && s.matches(proto, port))
    };
    if let Some(deny) = hits(Action::Deny).next() {
        return Verdict::deny(Some(deny.rule_id));
    }
    let mut allows = hits(Action::Allow).peekable();
    let Some(first) = allows.peek().copied() else {
        return Verdict::deny(None);
    };
    let redirecting = allows.find(|s| s.redirects(port));
    match (proto, redirecting) {
        (Proto::Udp, Some(slot)) => Verdict::deny(Some(slot.rule_id)),
        (_, redirecting) => Verdict {
            action: Action::Allow,
            rule_id: Some(first.rule_id),
            redirect: proto == Proto::Tcp && redirecting.is_some(),
        },
    }
}
