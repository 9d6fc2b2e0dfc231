//! `[[egress.ask]]`: domain rules whose requests are held for an operator instead of
//! passed. An ask rule makes its names reachable like an allow rule, but every TCP port
//! it covers (80 and 443 unless `ports` says otherwise) goes to the inspecting proxy,
//! where each request its `[[egress.ask.http]]` routes admit (every request, without
//! routes) waits for `cork approve` / `cork deny` — before any allow rule for the name is
//! asked, so an ask rule narrows what an allow rule would pass (see
//! [`crate::Policy::request_decision`]).
//!
//! This module refuses what an ask rule cannot mean: a `cidr` (the proxy holds requests
//! by the name they are for), `inspect` (always on: nothing of an ask rule may pass
//! unseen) and a protocol other than TCP (HTTP is what is held).

use std::ops::Range;

use crate::error::ManifestError;
use crate::locate::Locator;
use crate::ports::PortRange;
use crate::route::{self, HttpRoute};
use crate::schema::{RawRoute, RawRule};
use toml::Spanned;

/// The ports of an ask rule without `ports`: where HTTP and TLS are.
pub(crate) fn default_ports() -> Vec<PortRange> {
    [80, 443]
        .into_iter()
        .filter_map(|p| PortRange::from_number(p).ok())
        .collect()
}

/// Refuses keys an `[[egress.ask]]` entry (`id`, at `span`) cannot have.
pub(crate) fn check_ask_entry(
    loc: &Locator<'_>,
    id: &str,
    span: Range<usize>,
    raw: &RawRule,
) -> Result<(), ManifestError> {
    if let Some(cidr) = &raw.cidr {
        return Err(loc.error(
            cidr.span(),
            format!("{id}.cidr"),
            "an ask rule holds requests by the name they are for, which a `cidr` rule does \
             not have; use `domain`",
        ));
    }
    if raw.domain.is_none() {
        return Err(loc.error(span, id, "needs `domain`"));
    }
    if let Some(inspect) = &raw.inspect {
        return Err(loc.error(
            inspect.span(),
            format!("{id}.inspect"),
            "an ask rule is always inspected (each request waits for an operator, so none \
             may pass unseen); remove `inspect`",
        ));
    }
    if let Some(proto) = raw.proto.as_ref().filter(|p| p.get_ref() != "tcp") {
        return Err(loc.error(
            proto.span(),
            format!("{id}.proto"),
            format!(
                "an ask rule holds HTTP requests, which go over TCP; {:?} cannot be held — \
                 remove `proto`",
                proto.get_ref()
            ),
        ));
    }
    Ok(())
}

/// Validates an ask rule's `[[egress.ask.http]]` entries.
pub(crate) fn ask_routes(
    loc: &Locator<'_>,
    id: &str,
    http: Option<Vec<Spanned<RawRoute>>>,
) -> Result<Vec<HttpRoute>, ManifestError> {
    http.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, entry)| route::http_route(loc, &format!("{id}.http[{i}]"), entry))
        .collect()
}
