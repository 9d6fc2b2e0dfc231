//! The built-in detectors, one file per family. Each pattern is written from the
//! provider's documented token format (prefix, alphabet, length, checksum); ids are
//! stable: manifests name them and audit events report them.
//!
//! Two shapes: [`tok`] for formats that identify themselves (a prefix, a structure), whose
//! keyword starts the match; [`ctx`] for values recognisable only by the name they are
//! assigned to (`DATADOG_API_KEY=<32 hex>`), whose keywords are those names.

mod ai;
mod cloud;
mod connection;
mod keys;
mod messaging;
mod observability;
mod payment;
mod registry;
mod saas;
mod scm;

use super::detectors::{Check, Detector, Family, Kind, Severity};

/// Every built-in, in a fixed order.
pub(super) fn all() -> Vec<Detector> {
    type List = fn() -> Vec<Detector>;
    let families: [(Family, List); 10] = [
        (Family::Cloud, cloud::detectors),
        (Family::ScmCi, scm::detectors),
        (Family::Registry, registry::detectors),
        (Family::Ai, ai::detectors),
        (Family::Payment, payment::detectors),
        (Family::Messaging, messaging::detectors),
        (Family::Observability, observability::detectors),
        (Family::Saas, saas::detectors),
        (Family::PrivateKey, keys::detectors),
        (Family::Connection, connection::detectors),
    ];
    let mut out = Vec::new();
    for (family, list) in families {
        for mut d in list() {
            // Card numbers and the generic check set their own family.
            if d.family == Family::Custom {
                d.family = family;
            }
            out.push(d);
        }
    }
    out
}

/// A self-identifying format; `regex` runs in ASCII mode.
fn tok(
    id: &str,
    title: &str,
    severity: Severity,
    keywords: &[&str],
    regex: &str,
    check: Check,
) -> Detector {
    Detector {
        name: id.to_string(),
        title: title.to_string(),
        family: Family::Custom,
        kind: Kind::Specific,
        severity,
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        regex: format!("(?-u){regex}"),
        check,
    }
}

/// A value known by the name it is assigned to: one of `names` (any case) and more name
/// characters, `=`, `:`, `:=` or `=>`, optional quotes, and `value` (the subject, group
/// `s`). One nesting level is allowed (`datadog:\n  api_key: ...`).
fn ctx(
    id: &str,
    title: &str,
    severity: Severity,
    names: &[&str],
    value: &str,
    check: Check,
) -> Detector {
    let alts: Vec<String> = names.iter().map(|n| regex_syntax::escape(n)).collect();
    let regex = format!(
        concat!(
            r#"(?-u)(?i:{})[A-Za-z0-9_.-]{{0,32}}["']?[ \t]{{0,4}}(?:[:=]|:=|=>)[\s"'{{]{{0,8}}"#,
            r#"(?:[A-Za-z0-9_-]{{1,32}}["']?[ \t]{{0,2}}[:=][\s"']{{0,4}})?(?P<s>{})"#
        ),
        alts.join("|"),
        value
    );
    Detector {
        name: id.to_string(),
        title: title.to_string(),
        family: Family::Custom,
        kind: Kind::Context,
        severity,
        keywords: names.iter().map(|k| k.to_string()).collect(),
        regex,
        check,
    }
}

/// The usual check for a context value: random-looking, at least 16 bytes.
const RANDOM: Check = Check::Entropy {
    min_len: 16,
    min_bits: 3.0,
};

/// Hex values carry at most 4 bits per character.
const RANDOM_HEX: Check = Check::Entropy {
    min_len: 16,
    min_bits: 2.8,
};

/// Subject patterns used by many detectors (each ends where the value must end).
const HEX32: &str = r"[a-f0-9]{32}\b";
const HEX40: &str = r"[a-f0-9]{40}\b";
const HEX64: &str = r"[a-f0-9]{64}\b";
const UUID: &str = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b";
