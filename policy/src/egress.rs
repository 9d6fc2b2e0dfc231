//! One `[[egress.allow]]`, `[[egress.deny]]` or `[[egress.ask]]` entry, validated: its
//! target (`cidr` or `domain`), ports, protocol and inspection, every refusal located.

use toml::Spanned;

use crate::domain::{DomainError, DomainPattern};
use crate::error::ManifestError;
use crate::inspect::{InspectMode, inspection};
use crate::locate::Locator;
use crate::ports::{PortRange, Proto};
use crate::prefix::Prefix;
use crate::route::HttpRoute;
use crate::rule::{Action, RuleInfo, RuleTarget};
use crate::schema::{PortValue, RawRule};

/// One validated egress entry.
pub(crate) struct Entry {
    pub info: RuleInfo,
    /// For a domain rule, the (line, col) of its `domain` value.
    pub domain_at: Option<(usize, usize)>,
    pub inspect: InspectMode,
    pub routes: Vec<HttpRoute>,
}

/// Which list of `[egress]` an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Allow,
    Deny,
    /// An allow rule whose every request waits for an operator (see `ask.rs`).
    Ask,
}

pub(crate) fn rule(
    loc: &Locator<'_>,
    kind: Kind,
    index: usize,
    entry: Spanned<RawRule>,
) -> Result<Entry, ManifestError> {
    let (id, action) = match kind {
        Kind::Allow => (format!("egress.allow[{index}]"), Action::Allow),
        Kind::Deny => (format!("egress.deny[{index}]"), Action::Deny),
        Kind::Ask => (format!("egress.ask[{index}]"), Action::Allow),
    };
    let span = entry.span();
    let raw = entry.into_inner();
    if kind == Kind::Ask {
        crate::ask::check_ask_entry(loc, &id, span.clone(), &raw)?;
    }

    let (target, domain_at) = match (raw.cidr, raw.domain) {
        (Some(_), Some(_)) => {
            return Err(loc.error(span, id, "give either `cidr` or `domain`, not both"));
        }
        (None, None) => return Err(loc.error(span, id, "needs `cidr` or `domain`")),
        (Some(cidr), None) => {
            let net: Prefix = cidr.get_ref().parse().map_err(|e: crate::PrefixError| {
                loc.error(cidr.span(), format!("{id}.cidr"), e.to_string())
            })?;
            (RuleTarget::Prefix(net), None)
        }
        (None, Some(domain)) => {
            let pattern: DomainPattern = domain.get_ref().parse().map_err(|e: DomainError| {
                loc.error(domain.span(), format!("{id}.domain"), e.to_string())
            })?;
            (
                RuleTarget::Domain(pattern),
                Some(loc.line_col(domain.span().start)),
            )
        }
    };
    if domain_at.is_some() && action == Action::Deny {
        // A domain deny refuses the name itself (the proxy answers nothing for it), so a
        // port or protocol would suggest a narrowing that does not happen.
        let narrowing = [
            ("ports", raw.ports.as_ref().map(Spanned::span)),
            ("proto", raw.proto.as_ref().map(Spanned::span)),
        ];
        if let Some((key, Some(at))) = narrowing.into_iter().find(|(_, at)| at.is_some()) {
            return Err(loc.error(
                at,
                format!("{id}.{key}"),
                format!(
                    "a domain deny rule refuses the name for every port and protocol; remove \
                     `{key}` (only `cidr` deny rules can be narrowed by `{key}`)"
                ),
            ));
        }
    }

    let mut ports = Vec::new();
    if let Some(list) = raw.ports {
        if list.get_ref().is_empty() {
            return Err(loc.error(
                list.span(),
                format!("{id}.ports"),
                "an empty list matches no port; omit ports for every port",
            ));
        }
        for (i, value) in list.into_inner().into_iter().enumerate() {
            let range = match value.get_ref() {
                PortValue::Number(n) => PortRange::from_number(*n),
                PortValue::Text(t) => PortRange::from_text(t),
            };
            ports.push(
                range.map_err(|e| {
                    loc.error(value.span(), format!("{id}.ports[{i}]"), e.to_string())
                })?,
            );
        }
    }

    if kind == Kind::Ask && ports.is_empty() {
        ports = crate::ask::default_ports();
    }

    let proto = match raw.proto {
        // Allow rules name a service, which is TCP far more often than not; a deny rule is
        // meant to shut a destination, so it covers both protocols unless narrowed.
        None if action == Action::Allow => Proto::Tcp,
        None => Proto::Any,
        Some(p) => Proto::from_manifest(p.get_ref()).ok_or_else(|| {
            loc.error(
                p.span(),
                format!("{id}.proto"),
                format!(
                    "unknown protocol {:?}; expected \"tcp\", \"udp\" or \"any\"",
                    p.get_ref()
                ),
            )
        })?,
    };

    let (line, col) = loc.line_col(span.start);
    let info = RuleInfo {
        id,
        action,
        target,
        ports,
        proto,
        line,
        col,
    };
    let (inspect, routes) = if kind == Kind::Ask {
        (
            InspectMode::On,
            crate::ask::ask_routes(loc, &info.id, raw.http)?,
        )
    } else {
        inspection(loc, &info.id, &info, raw.inspect, raw.http)?
    };
    Ok(Entry {
        info,
        domain_at,
        inspect,
        routes,
    })
}
