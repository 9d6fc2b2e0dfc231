//! One compiled manifest rule, as the rest of cork sees it (audit events name rules by
//! [`RuleInfo::id`]). Prefix rules and domain rules share one table, so a `rule_id` means
//! the same thing whichever layer reports it.

use std::fmt;

use crate::domain::DomainPattern;
use crate::error::ManifestError;
use crate::plan::{MAX_RULES, RuleId};
use crate::ports::{PortRange, Proto};
use crate::prefix::Prefix;

/// What a rule does to matching traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })
    }
}

/// A validated egress rule. Its index in [`crate::Policy::rules`] is the `rule_id` the
/// kernel reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Where the rule is in the manifest: `egress.allow[0]`, `egress.deny[2]`.
    pub id: String,
    pub action: Action,
    /// What the rule's destinations are: a prefix (`cidr`) or names (`domain`).
    pub target: RuleTarget,
    /// Destination port ranges, in manifest order; empty means every port.
    pub ports: Vec<PortRange>,
    pub proto: Proto,
    /// 1-based manifest line of the entry (its `[[egress.*]]` header or inline table).
    pub line: usize,
    /// 1-based column of the entry.
    pub col: usize,
}

/// The destinations of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleTarget {
    /// `cidr = "..."`. IPv4-mapped IPv6 prefixes are already turned into IPv4.
    Prefix(Prefix),
    /// `domain = "..."`: the addresses the names resolve to, learned at run time.
    Domain(DomainPattern),
}

impl RuleInfo {
    /// The prefix of a `cidr` rule; `None` for a domain rule.
    pub fn prefix(&self) -> Option<Prefix> {
        match &self.target {
            RuleTarget::Prefix(prefix) => Some(*prefix),
            RuleTarget::Domain(_) => None,
        }
    }

    /// The pattern of a `domain` rule; `None` for a prefix rule.
    pub fn domain(&self) -> Option<&DomainPattern> {
        match &self.target {
            RuleTarget::Prefix(_) => None,
            RuleTarget::Domain(pattern) => Some(pattern),
        }
    }

    /// Whether this rule covers traffic to `dst` with protocol `proto` and port `port`.
    /// Always `false` for a domain rule: which addresses it covers is only known once its
    /// names are resolved.
    pub fn matches(&self, dst: std::net::IpAddr, proto: Proto, port: u16) -> bool {
        self.prefix().is_some_and(|net| net.contains(dst)) && self.covers_port(proto, port)
    }

    /// Whether this rule's `proto` and `ports` cover protocol `proto` and port `port`.
    pub fn covers_port(&self, proto: Proto, port: u16) -> bool {
        self.proto.matches(proto)
            && (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(port)))
    }
}

/// The `rule_id` of the rule at `index`, or the refusal when the table is full (at
/// [`MAX_RULES`]).
pub(crate) fn rule_id(
    index: usize,
    rule: &RuleInfo,
    origin: &str,
) -> Result<RuleId, ManifestError> {
    RuleId::try_from(index)
        .ok()
        .filter(|_| index < MAX_RULES)
        .ok_or_else(|| too_many_rules(rule, origin))
}

/// The refusal of `rule`, the first that does not fit the rule table.
pub(crate) fn too_many_rules(rule: &RuleInfo, origin: &str) -> ManifestError {
    ManifestError {
        origin: origin.to_owned(),
        line: rule.line,
        col: rule.col,
        path: rule.id.clone(),
        message: format!("too many rules; at most {MAX_RULES} are supported"),
    }
}
