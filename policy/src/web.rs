//! The inspecting proxy's first decision on a redirected flow: from the name the client
//! gave (TLS server name or HTTP `Host`) and the port it connected to, whether to
//! terminate TLS and inspect, pass the flow through untouched, or refuse it.

use crate::compile::Policy;
use crate::domain::normalise_query;
use crate::domain_rule::{DomainRule, DomainVerdict, matching};
use crate::plan::RuleId;
use crate::ports::Proto;
use crate::rule::Action;

/// What the proxy does with one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebDecision {
    /// Terminate TLS (or read plain HTTP) and check every request; `rule_id` is the
    /// domain rule whose routes apply.
    Inspect { rule_id: RuleId },
    /// Relay the bytes without interception (`inspect = false`).
    PassThrough { rule_id: RuleId },
    /// Refuse the flow. `reason` is one of `"denied_domain"`, `"unknown_name"` and
    /// `"port_not_allowed"`, fixed strings for audit events.
    Deny {
        rule_id: Option<RuleId>,
        reason: &'static str,
    },
}

impl Policy {
    /// Decides a flow to `host` (any case, trailing dot optional) on TCP `port`. Of the
    /// allow rules matching `host` that cover TCP `port`, the most specific decides (as in
    /// [`Policy::match_domain`]): it inspects, passes through, or — when it covers the
    /// port but would not have sent it to the proxy — the flow is refused, because only a
    /// less specific rule could have redirected it and the narrower rule is the one that
    /// speaks for this name.
    pub fn web_decision(&self, host: &str, port: u16) -> WebDecision {
        match self.match_domain(host) {
            DomainVerdict::Deny { rule_id } => {
                return WebDecision::Deny {
                    rule_id: Some(rule_id),
                    reason: "denied_domain",
                };
            }
            DomainVerdict::NoMatch => {
                return WebDecision::Deny {
                    rule_id: None,
                    reason: "unknown_name",
                };
            }
            DomainVerdict::Allow { .. } => {}
        }
        let name = normalise_query(host).unwrap_or_default();
        let chosen = matching(&self.domains, &name, Action::Allow)
            .into_iter()
            .find(|r| r.proto.matches(Proto::Tcp) && covers(r, port));
        match chosen {
            Some(rule) if rule.inspects(port) => WebDecision::Inspect {
                rule_id: rule.rule_id,
            },
            Some(rule) if rule.redirects(port) => WebDecision::PassThrough {
                rule_id: rule.rule_id,
            },
            // The rule that covers the port but does not redirect it, or none when no rule
            // for this name covers the port (as the kernel's default deny has none).
            other => WebDecision::Deny {
                rule_id: other.map(|r| r.rule_id),
                reason: "port_not_allowed",
            },
        }
    }

    /// The domain rule with kernel id `rule_id`; `None` for a `cidr` rule or an unknown id.
    pub fn domain_rule(&self, rule_id: RuleId) -> Option<&DomainRule> {
        // `domains` is in rule order, which `Policy::from_manifest` checks.
        self.domains
            .binary_search_by_key(&rule_id, |d| d.rule_id)
            .ok()
            .map(|i| &self.domains[i])
    }
}

fn covers(rule: &DomainRule, port: u16) -> bool {
    rule.ports.is_empty() || rule.ports.iter().any(|r| r.contains(port))
}
