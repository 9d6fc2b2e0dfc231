//! Which flows of a domain rule the inspecting proxy sees: the `inspect` key, what it
//! means per port ([`DomainRule::redirects`], [`DomainRule::inspects`]), and the
//! refusals of `inspect` and `[[egress.allow.http]]` where nothing would be inspected.
//!
//! Ports 80 and 443 are inspected by default because that is where HTTP and TLS are;
//! other ports carry protocols the proxy cannot read unless the author says they are
//! HTTP or TLS (`inspect = true`).

use toml::Spanned;

use crate::domain_rule::DomainRule;
use crate::error::ManifestError;
use crate::locate::Locator;
use crate::plan::Redirect;
use crate::ports::{PortRange, Proto};
use crate::route::{self, HttpRoute};
use crate::rule::{Action, RuleInfo};
use crate::schema::RawRoute;

/// A domain allow rule's `inspect` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InspectMode {
    /// No `inspect` key: ports 80 and 443 are redirected and inspected, others go out
    /// directly.
    #[default]
    Default,
    /// `inspect = true`: every port of the rule is redirected and inspected.
    On,
    /// `inspect = false`: ports 80 and 443 are still redirected, so that the proxy can
    /// check the TLS server name, then passed through without interception (for clients
    /// that pin their server's certificate).
    Off,
}

impl InspectMode {
    /// The redirect of the kernel slots of a domain allow rule with this mode.
    pub(crate) fn redirect(self) -> Redirect {
        match self {
            InspectMode::On => Redirect::All,
            InspectMode::Default | InspectMode::Off => Redirect::Web,
        }
    }
}

fn web_port(port: u16) -> bool {
    port == 80 || port == 443
}

/// Whether a rule with `proto` and `ports` lets TCP to `port` through.
fn covers_tcp(proto: Proto, ports: &[PortRange], port: u16) -> bool {
    proto.matches(Proto::Tcp) && (ports.is_empty() || ports.iter().any(|r| r.contains(port)))
}

/// Whether an allow rule with `mode`, `proto` and `ports` inspects some TCP port.
fn inspects_some_port(mode: InspectMode, proto: Proto, ports: &[PortRange]) -> bool {
    match mode {
        InspectMode::On => proto.matches(Proto::Tcp),
        InspectMode::Default => covers_tcp(proto, ports, 80) || covers_tcp(proto, ports, 443),
        InspectMode::Off => false,
    }
}

impl DomainRule {
    /// Whether the kernel sends TCP to `port`, for this rule, to the proxy rather than
    /// straight out: with `inspect = true` every TCP port the rule covers, otherwise
    /// ports 80 and 443 when the rule covers them. Never for a deny rule.
    pub fn redirects(&self, port: u16) -> bool {
        self.action == Action::Allow
            && covers_tcp(self.proto, &self.ports, port)
            && (self.inspect == InspectMode::On || web_port(port))
    }

    /// Whether the proxy terminates and inspects TLS (or reads HTTP) on TCP to `port` for
    /// this rule: like [`DomainRule::redirects`], except that `inspect = false` never
    /// inspects.
    pub fn inspects(&self, port: u16) -> bool {
        self.inspect != InspectMode::Off && self.redirects(port)
    }

    /// Whether [`DomainRule::inspects`] holds for at least one port.
    pub fn inspects_any_port(&self) -> bool {
        self.action == Action::Allow && inspects_some_port(self.inspect, self.proto, &self.ports)
    }
}

/// Validates a rule's `inspect` and `http` keys; `id` is the rule's path
/// (`egress.allow[0]`).
pub(crate) fn inspection(
    loc: &Locator<'_>,
    id: &str,
    rule: &RuleInfo,
    inspect: Option<Spanned<bool>>,
    http: Option<Vec<Spanned<RawRoute>>>,
) -> Result<(InspectMode, Vec<HttpRoute>), ManifestError> {
    let mode = match inspect.as_ref().map(|v| *v.get_ref()) {
        None => InspectMode::Default,
        Some(true) => InspectMode::On,
        Some(false) => InspectMode::Off,
    };
    if let Some(value) = &inspect {
        let why = if rule.action == Action::Deny {
            Some("a deny rule's traffic is refused, so there is nothing to inspect")
        } else if rule.domain().is_none() {
            Some(
                "only domain rules are inspected: the proxy decides by the name a client asks \
                 for, which a `cidr` rule does not have",
            )
        } else if mode == InspectMode::On && rule.proto == Proto::Udp {
            // The proxy takes TCP only, and UDP the kernel would redirect is refused so
            // that HTTP/3 falls back to TCP: such a rule would let nothing through.
            Some(
                "the proxy only takes TCP, and UDP to an inspected port is refused (so that \
                 HTTP/3 falls back to TCP); with `proto = \"udp\"` this rule would allow \
                 nothing",
            )
        } else {
            None
        };
        if let Some(why) = why {
            return Err(loc.error(
                value.span(),
                format!("{id}.inspect"),
                format!("{why}; remove `inspect`"),
            ));
        }
    }

    let Some(entries) = http else {
        return Ok((mode, Vec::new()));
    };
    let Some(first) = entries.first() else {
        return Ok((mode, Vec::new()));
    };
    let never = if rule.action == Action::Deny {
        Some("a deny rule is never inspected")
    } else if rule.domain().is_none() {
        Some("a `cidr` rule is never inspected")
    } else if mode == InspectMode::Off {
        Some("`inspect = false` passes this rule's traffic through uninspected")
    } else if !inspects_some_port(mode, rule.proto, &rule.ports) {
        Some(
            "this rule covers neither TCP port 80 nor 443, which are the ports inspected \
             by default; add `inspect = true` if its other ports carry HTTP or TLS",
        )
    } else {
        None
    };
    if let Some(why) = never {
        return Err(loc.error(
            first.span(),
            format!("{id}.http"),
            format!("http routes need an inspected rule, and {why}"),
        ));
    }
    let routes = entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| route::http_route(loc, &format!("{id}.http[{i}]"), entry))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((mode, routes))
}
