//! The manifest exactly as serde reads it: the TOML shape, unknown keys refused, and a span
//! kept on every value so that `manifest.rs` can point at the one that is wrong.
//!
//! Required keys are `Option`s here on purpose: a missing key is reported by
//! `manifest.rs` with a path and a place, which serde's "missing field" cannot give.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    pub version: Option<Spanned<i64>>,
    pub bottle: Option<Spanned<RawBottle>>,
    pub egress: Option<RawEgress>,
    pub loopback: Option<RawLoopback>,
    pub dns: Option<RawDns>,
    pub tls: Option<Spanned<RawTls>>,
    pub credentials: Option<Vec<Spanned<RawCredential>>>,
    pub dlp: Option<Spanned<RawDlp>>,
    pub env: Option<RawEnv>,
    pub files: Option<RawFiles>,
    pub unix: Option<RawUnix>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBottle {
    pub name: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEgress {
    pub allow: Option<Vec<Spanned<RawRule>>>,
    pub deny: Option<Vec<Spanned<RawRule>>>,
    /// `[[egress.ask]]`: domain rules whose requests wait for an operator.
    pub ask: Option<Vec<Spanned<RawRule>>>,
}

/// One `[[egress.allow]]`, `[[egress.deny]]` or `[[egress.ask]]` entry. Exactly one of `cidr` and `domain`
/// must be present, which `manifest.rs` checks so the refusal can point at the entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub cidr: Option<Spanned<String>>,
    pub domain: Option<Spanned<String>>,
    pub ports: Option<Spanned<Vec<Spanned<PortValue>>>>,
    pub proto: Option<Spanned<String>>,
    pub inspect: Option<Spanned<bool>>,
    /// `[[egress.allow.http]]` (or `[[egress.ask.http]]`) entries: TOML appends them to
    /// the last `[[egress.allow]]` (`[[egress.ask]]`).
    pub http: Option<Vec<Spanned<RawRoute>>>,
}

/// One `[[egress.allow.http]]` entry; `inspect.rs` and `route.rs` give it meaning.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    pub paths: Option<Spanned<Vec<Spanned<String>>>>,
    pub dlp_action: Option<Spanned<String>>,
    pub dlp_skip: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLoopback {
    pub host_ports: Option<Spanned<Vec<Spanned<i64>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub upstream: Option<Spanned<Vec<Spanned<String>>>>,
    pub min_ttl: Option<Spanned<i64>>,
    pub max_ttl: Option<Spanned<i64>>,
    pub queries_per_second: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub upstream_ca: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    pub domain: Option<Spanned<String>>,
    pub header: Option<Spanned<String>>,
    pub placeholder: Option<Spanned<String>>,
    pub env: Option<Spanned<String>>,
    pub value_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDlp {
    pub action: Option<Spanned<String>>,
    pub approval_timeout: Option<Spanned<String>>,
    pub detectors: Option<Vec<Spanned<RawDetector>>>,
    /// `[dlp.actions]`: detector id → action.
    pub actions: Option<std::collections::BTreeMap<String, Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetector {
    pub name: Option<Spanned<String>>,
    pub regex: Option<Spanned<String>>,
    pub keywords: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnv {
    pub pass: Option<Vec<Spanned<String>>>,
    pub scrub: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFiles {
    pub hide: Option<Vec<Spanned<String>>>,
    pub allow: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUnix {
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A `ports` element: `443` or `"8000-8100"`, checked later by `PortRange`.
#[derive(Debug)]
pub(crate) enum PortValue {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for PortValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PortValueVisitor)
    }
}

struct PortValueVisitor;

impl Visitor<'_> for PortValueVisitor {
    type Value = PortValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port number or a \"lo-hi\" port range string")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortValue, E> {
        Ok(PortValue::Number(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortValue, E> {
        // TOML integers are i64; saturating keeps a huge one "out of range", not a panic.
        Ok(PortValue::Number(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PortValue, E> {
        Ok(PortValue::Text(v.to_owned()))
    }
}
