//! Domain rules as the DNS proxy will use them: which rule decides a queried name
//! ([`Policy::match_domain`]) and which port/protocol slots the addresses in an allowed
//! answer get ([`Policy::allowed_slots`]). Pure functions of the compiled [`Policy`].

use std::cmp::Reverse;

use crate::compile::Policy;
use crate::domain::{DomainPattern, normalise_query};
use crate::inspect::InspectMode;
use crate::plan::{self, Redirect, RuleId, Slot};
use crate::ports::{PortRange, Proto};
use crate::route::HttpRoute;
use crate::rule::Action;

/// A `domain` rule of the manifest. Its rule is also in [`Policy::rules`] at `rule_id`,
/// so kernel, proxy and audit share one rule table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// Index into [`Policy::rules`].
    pub rule_id: RuleId,
    pub pattern: DomainPattern,
    pub action: Action,
    /// Destination port ranges; empty means every port. Always empty for deny rules.
    pub ports: Vec<PortRange>,
    /// `tcp` by default for allow rules; always `any` for deny rules.
    pub proto: Proto,
    /// `inspect`: whether the inspecting proxy terminates this rule's TLS (see
    /// [`DomainRule::inspects`]). Always [`InspectMode::Default`] for deny rules.
    pub inspect: InspectMode,
    /// `[[egress.allow.http]]` entries, in manifest order; empty means any request. Only
    /// ever set on a rule that inspects some port (see [`crate::route_decision`]).
    pub routes: Vec<HttpRoute>,
    /// An `[[egress.ask]]` rule: an allow rule inspected on every port it covers, whose
    /// requests (those its routes admit) wait for an operator's approval — before any
    /// `[[egress.allow]]` rule for the name is asked (see [`Policy::request_decision`]).
    pub ask: bool,
    /// 1-based manifest line of the `domain` value.
    pub line: usize,
    /// 1-based column of the `domain` value.
    pub col: usize,
}

/// How the domain rules decide a queried name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainVerdict {
    /// An allow rule matches and no deny rule does. `rule_id` is the most specific
    /// matching allow rule: an exact name before any wildcard, a longer wildcard suffix
    /// before a shorter one, then manifest order.
    Allow { rule_id: RuleId },
    /// A deny rule matches (deny beats allow). `rule_id` is the most specific matching
    /// deny rule, chosen like the allow rule above.
    Deny { rule_id: RuleId },
    /// No domain rule matches; the name is not reachable by name (default deny).
    NoMatch,
}

impl Policy {
    /// Decides a queried name. The name is compared case-insensitively, with or without
    /// its trailing dot. Names that cannot be a host name in dotted text (empty labels,
    /// labels over 63 bytes, bytes outside `[A-Za-z0-9_-]`, over 253 bytes) match no rule.
    pub fn match_domain(&self, name: &str) -> DomainVerdict {
        match normalise_query(name) {
            Some(name) => verdict(&self.domains, &name),
            None => DomainVerdict::NoMatch,
        }
    }

    /// For a name [`Policy::match_domain`] allows, the slots of **every** allow rule
    /// matching it (most specific rule first, then manifest order; a slot equal to an
    /// earlier one but for its rule id is dropped, as in the kernel plan); empty when the
    /// name is denied or matches nothing. All slots have [`Action::Allow`], and a
    /// [`Redirect`] other than `None` (see [`DomainRule::redirects`]).
    ///
    /// These are the name's own slots only. The kernel entry for an address learned from
    /// the answer must also carry the slots of every `cidr` rule whose prefix contains
    /// that address — as [`crate::PrefixEntry`] does — so that a deny prefix still wins,
    /// and must fit [`crate::MAX_SLOTS_PER_PREFIX`].
    pub fn allowed_slots(&self, name: &str) -> Vec<Slot> {
        let Some(name) = normalise_query(name) else {
            return Vec::new();
        };
        if !matching(&self.domains, &name, Action::Deny).is_empty() {
            return Vec::new();
        }
        let order: Vec<(usize, Redirect)> = matching(&self.domains, &name, Action::Allow)
            .iter()
            .map(|r| (r.rule_id as usize, r.inspect.redirect()))
            .collect();
        plan::slots(&order, &self.rules)
    }
}

/// [`Policy::match_domain`] over `domains`, for a name already normalised; `manifest.rs`
/// needs it before there is a `Policy`.
pub(crate) fn verdict(domains: &[DomainRule], name: &str) -> DomainVerdict {
    if let Some(rule) = matching(domains, name, Action::Deny).first() {
        return DomainVerdict::Deny {
            rule_id: rule.rule_id,
        };
    }
    match matching(domains, name, Action::Allow).first() {
        Some(rule) => DomainVerdict::Allow {
            rule_id: rule.rule_id,
        },
        None => DomainVerdict::NoMatch,
    }
}

/// The rules of `domains` with `action` matching the normalised `name`, most specific
/// first.
pub(crate) fn matching<'a>(
    domains: &'a [DomainRule],
    name: &str,
    action: Action,
) -> Vec<&'a DomainRule> {
    let mut hits: Vec<&DomainRule> = domains
        .iter()
        .filter(|r| r.action == action && r.pattern.matches_normalised(name))
        .collect();
    hits.sort_by_key(|r| (Reverse(r.pattern.specificity()), r.rule_id));
    hits
}
