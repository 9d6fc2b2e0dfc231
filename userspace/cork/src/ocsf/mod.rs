//! cork's audit events as OCSF events (Open Cybersecurity Schema Framework, version
//! [`SCHEMA_VERSION`]): `cork audit --format ocsf`, and the daemon's `--ocsf-log`
//! ([`OcsfLog`]). The mapping is pure: one audit line (a JSON object as any `--audit-log`
//! or the daemon's history holds it) in, one OCSF event out.
//!
//! | cork event | OCSF class |
//! | --- | --- |
//! | `layer: kernel` verdicts | Network Activity (4001) — [`network`] |
//! | `layer: proxy`, `event: connection` | Network Activity (4001) — [`network`] |
//! | `layer: proxy`, `event: request` | HTTP Activity (4002) — [`http`] |
//! | `layer: dns` | DNS Activity (4003) — [`dns`] |
//! | `layer: cork` (lifecycle) | Application Lifecycle (6002) — [`lifecycle`] |
//! | `layer: audit` (loss) and anything else | Base Event (0) — [`lifecycle::base`] |
//!
//! Nothing is dropped: a cork field that has no OCSF attribute, or whose value does not
//! have the shape the mapping expects, lands in `unmapped` as it was; so do `bottle` and
//! the line's hash-chain value `chain` (also `metadata.uid`), which tie the OCSF event to
//! the line it came from.

mod dns;
mod envelope;
mod fields;
mod http;
mod lifecycle;
mod log;
mod network;
mod proxy;

use serde_json::Value;

pub use envelope::SCHEMA_VERSION;
use fields::{Fields, Head};
pub use log::OcsfLog;

/// Why a line could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum OcsfError {
    #[error("not JSON")]
    NotJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no RFC 3339 `ts` (OCSF requires the event's time): {found}")]
    NoTime { found: String },
}

/// The OCSF event for one audit line.
pub fn from_line(line: &[u8]) -> Result<Value, OcsfError> {
    let value = serde_json::from_slice(line).map_err(|source| OcsfError::NotJson { source })?;
    from_event(value)
}

/// The OCSF event for one audit event.
pub fn from_event(event: Value) -> Result<Value, OcsfError> {
    let Value::Object(map) = event else {
        return Err(OcsfError::NotAnObject);
    };
    let mut f = Fields::new(map);
    let head = Head::take(&mut f)?;
    let envelope = match (head.layer.as_deref(), head.event.as_deref()) {
        (Some("kernel"), _) => network::verdict(&head, &mut f),
        (Some("proxy"), Some("request")) => http::request(&head, &mut f),
        (Some("proxy"), _) if f.has("method") => http::request(&head, &mut f),
        (Some("proxy"), _) => network::proxy_connection(&head, &mut f),
        (Some("dns"), _) => dns::query(&head, &mut f),
        (Some("cork"), _) => lifecycle::lifecycle(&head, &mut f),
        _ => lifecycle::base(&head, &mut f),
    };
    Ok(envelope.finish(head, f))
}

#[cfg(test)]
mod tests;
