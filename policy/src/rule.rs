//! One compiled manifest rule, as the rest of cork sees it (audit events name rules by
//! [`RuleInfo::id`]).

use std::fmt;

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
    /// The destination prefix (IPv4-mapped IPv6 prefixes already turned into IPv4).
    pub net: Prefix,
    /// Destination port ranges, in manifest order; empty means every port.
    pub ports: Vec<PortRange>,
    pub proto: Proto,
    /// 1-based manifest line of the entry (its `[[egress.*]]` header or inline table).
    pub line: usize,
    /// 1-based column of the entry.
    pub col: usize,
}

impl RuleInfo {
    /// Whether this rule covers traffic to `dst` with protocol `proto` and port `port`.
    pub fn matches(&self, dst: std::net::IpAddr, proto: Proto, port: u16) -> bool {
        self.net.contains(dst)
            && self.proto.matches(proto)
            && (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(port)))
    }
}
