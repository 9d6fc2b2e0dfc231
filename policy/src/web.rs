//! The inspecting proxy's first decision on a redirected flow: from the name the client
//! gave (TLS server name or HTTP `Host`) and the port it connected to, whether to
//! terminate TLS and inspect, pass the flow through untouched, or refuse it; then, for
//! each request of an inspected flow, which rule takes it and whether it is held.

use crate::compile::Policy;
use crate::domain::normalise_query;
use crate::domain_rule::{DomainRule, DomainVerdict, matching};
use crate::plan::RuleId;
use crate::ports::Proto;
use crate::route::{RouteVerdict, route_decision};
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

/// What the proxy does with one request of an inspected flow
/// ([`Policy::request_decision`]). `rule_id` is the rule that decided, for the audit
/// event and the request's route settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Sent on (after DLP), under this allow rule's routes.
    Allowed { rule_id: RuleId },
    /// Held for an operator by this `[[egress.ask]]` rule.
    Ask { rule_id: RuleId },
    /// Refused: the rule for the name has no route for it (`no_route`).
    NoRoute { rule_id: RuleId },
    /// Refused: a git push no route names (`git_push_refused`).
    GitPush { rule_id: RuleId },
    /// Refused: a path servers could read differently (`bad_path`).
    BadPath,
    /// Refused: the flow's rule is no domain rule, or nothing for the name covers the
    /// port (a flow the proxy should never have inspected).
    NoRule,
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
        let rules = matching(&self.domains, &name, Action::Allow);
        // An ask rule that covers the port makes the flow inspected whatever the allow
        // rules say: its requests must be seen to be held.
        let ask = rules.iter().find(|r| r.ask && covers_tcp(r, port));
        let chosen = rules.iter().find(|r| !r.ask && covers_tcp(r, port));
        match (chosen, ask) {
            (Some(rule), _) if rule.inspects(port) => WebDecision::Inspect {
                rule_id: rule.rule_id,
            },
            (_, Some(ask)) => WebDecision::Inspect {
                rule_id: ask.rule_id,
            },
            (Some(rule), None) if rule.redirects(port) => WebDecision::PassThrough {
                rule_id: rule.rule_id,
            },
            // The rule that covers the port but does not redirect it, or none when no rule
            // for this name covers the port (as the kernel's default deny has none).
            (other, None) => WebDecision::Deny {
                rule_id: other.map(|r| r.rule_id),
                reason: "port_not_allowed",
            },
        }
    }

    /// Decides one request to `host` on TCP `port` of a flow [`Policy::web_decision`]
    /// inspects under `flow_rule` (the rule it returned): `method` as sent,
    /// `path_and_query` the origin-form target. Ask rules come first — the most specific
    /// ask rule for the name and port whose routes admit the request holds it — and only
    /// then the flow's rule, as [`route_decision`] says. When the flow's rule is itself
    /// an ask rule (the flow is inspected for its sake), the allow rule for the name, if
    /// one covers the port, lets through what no ask rule takes. A path servers could
    /// read differently is refused whichever rule would take it.
    ///
    /// Per request, so cheap without ask rules: the flow's rule alone decides, and with
    /// them only the ask rules are scanned (they are the last of the rule table).
    pub fn request_decision(
        &self,
        flow_rule: RuleId,
        host: &str,
        port: u16,
        method: &str,
        path_and_query: &str,
    ) -> RequestVerdict {
        let Some(flow) = self.domain_rule(flow_rule) else {
            return RequestVerdict::NoRule;
        };
        let asks = self.ask_rules();
        let name = || normalise_query(host).unwrap_or_default();
        let mut refused_by_ask = None;
        if !asks.is_empty() {
            let name = name();
            for rule in matching(asks, &name, Action::Allow) {
                if !covers_tcp(rule, port) {
                    continue;
                }
                match route_decision(rule, method, path_and_query) {
                    RouteVerdict::Allowed => {
                        return RequestVerdict::Ask {
                            rule_id: rule.rule_id,
                        };
                    }
                    RouteVerdict::BadPath => return RequestVerdict::BadPath,
                    other => {
                        refused_by_ask.get_or_insert((rule.rule_id, other));
                    }
                }
            }
        }
        if !flow.ask {
            let rule_id = flow.rule_id;
            return match route_decision(flow, method, path_and_query) {
                RouteVerdict::Allowed => RequestVerdict::Allowed { rule_id },
                RouteVerdict::NoRoute => RequestVerdict::NoRoute { rule_id },
                RouteVerdict::GitPush => RequestVerdict::GitPush { rule_id },
                RouteVerdict::BadPath => RequestVerdict::BadPath,
            };
        }
        // An allow rule that covers the port here does not inspect it (else the flow
        // would be its): it passes what it would have passed uninspected.
        let others = &self.domains[..self.domains.len() - asks.len()];
        match matching(others, &name(), Action::Allow)
            .into_iter()
            .find(|r| covers_tcp(r, port))
        {
            Some(rule) => RequestVerdict::Allowed {
                rule_id: rule.rule_id,
            },
            None => match refused_by_ask {
                Some((rule_id, RouteVerdict::GitPush)) => RequestVerdict::GitPush { rule_id },
                Some((rule_id, _)) => RequestVerdict::NoRoute { rule_id },
                None => RequestVerdict::NoRule,
            },
        }
    }

    /// The `[[egress.ask]]` rules: the last of [`Policy::domains`], since ask rules take
    /// the rule ids after every allow and deny rule.
    fn ask_rules(&self) -> &[DomainRule] {
        let n = self.domains.iter().rev().take_while(|d| d.ask).count();
        &self.domains[self.domains.len() - n..]
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

/// Whether `rule` lets TCP to `port` through (redirected or not).
fn covers_tcp(rule: &DomainRule, port: u16) -> bool {
    rule.proto.matches(Proto::Tcp)
        && (rule.ports.is_empty() || rule.ports.iter().any(|r| r.contains(port)))
}
