//! Manifest v1: from TOML text to a validated [`Manifest`], every refusal located.
//!
//! This module owns the meaning of each key (defaults, allowed values, naming rules);
//! `schema.rs` owns the TOML shape, `domain.rs` and `dns.rs` the meaning of domain names
//! and of `[dns]`, `inspect.rs` and `route.rs` that of `inspect` and
//! `[[egress.allow.http]]`, `ask.rs` what `[[egress.ask]]` cannot have, `tls.rs`, `credential.rs`, `dlp.rs` and `unix.rs` that of their tables,
//! and `compile.rs` the kernel capacity limits.

use toml::Spanned;

use crate::credential::{Credential, credentials};
use crate::dlp::{DlpConfig, dlp_config};
use crate::dns::{DnsConfig, dns_config};
use crate::domain_rule::DomainRule;
use crate::egress::{Entry, Kind, rule};
use crate::env::{EnvConfig, PassAt, env_config};
use crate::error::ManifestError;
use crate::files::{FilesConfig, files_config};
use crate::locate::Locator;
use crate::plan::MAX_HOST_PORTS;
use crate::ports::user_port;
use crate::rule::{self, RuleInfo, RuleTarget};
use crate::schema::{RawBottle, RawManifest};
use crate::tls::{TlsConfig, tls_config};
use crate::unix::{UnixConfig, unix_config};

/// The only manifest version this crate reads.
pub const MANIFEST_VERSION: i64 = 1;

/// A manifest that passed validation. Not yet checked against kernel capacities; see
/// [`crate::Policy::from_manifest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The origin given to [`parse_manifest`], used to locate later errors.
    pub origin: String,
    /// `bottle.name`.
    pub name: String,
    /// `egress.allow` entries in manifest order, then `egress.deny` entries.
    pub rules: Vec<RuleInfo>,
    /// The `domain` entries of `rules`, in the same order, each naming its rule by index.
    pub domains: Vec<DomainRule>,
    /// `loopback.host_ports`, sorted and deduplicated.
    pub host_ports: Vec<u16>,
    /// `[dns]`, defaults filled in.
    pub dns: DnsConfig,
    /// `[tls]`, defaults filled in.
    pub tls: TlsConfig,
    /// `[[credentials]]`, in manifest order; each one's host is inspected.
    pub credentials: Vec<Credential>,
    /// `[dlp]`, defaults filled in.
    pub dlp: DlpConfig,
    /// `[env]`: variables kept or removed beyond cork's defaults.
    pub env: EnvConfig,
    /// `[files]`: paths hidden or let through beyond cork's defaults.
    pub files: FilesConfig,
    /// `[unix]`: the unix-domain sockets the bottle may reach.
    pub unix: UnixConfig,
    /// Problems that do not stop the manifest from working, located like errors
    /// (`cork check` prints them).
    pub warnings: Vec<ManifestError>,
}

/// Parses and validates manifest text. `origin` names the text in errors (a file path).
pub fn parse_manifest(src: &str, origin: &str) -> Result<Manifest, ManifestError> {
    parse_read(src, origin, crate::bulk::read(src))
}

/// [`parse_manifest`] given what the bulk reader made of `src` (see `bulk/`). Whatever
/// that reader refuses, and any manifest it read that does not validate, is parsed again
/// by [`parse_with_toml`], so that every error comes from the one reader.
pub(crate) fn parse_read(
    src: &str,
    origin: &str,
    bulk: Option<RawManifest>,
) -> Result<Manifest, ManifestError> {
    if let Some(raw) = bulk
        && let Ok(manifest) = validate(&Locator::new(src, origin), origin, raw)
    {
        return Ok(manifest);
    }
    parse_with_toml(src, origin)
}

/// [`parse_manifest`] with `toml` reading the whole text.
pub(crate) fn parse_with_toml(src: &str, origin: &str) -> Result<Manifest, ManifestError> {
    let loc = Locator::new(src, origin);
    let raw: RawManifest = toml::from_str(src).map_err(|e| loc.toml_error(&e))?;
    validate(&loc, origin, raw)
}

/// The checks and defaults of every key, on the manifest as serde read it.
fn validate(loc: &Locator<'_>, origin: &str, raw: RawManifest) -> Result<Manifest, ManifestError> {
    match raw.version {
        None => {
            return Err(loc.error(
                0..0,
                "version",
                "missing; start the manifest with `version = 1`",
            ));
        }
        Some(v) if *v.get_ref() != MANIFEST_VERSION => {
            return Err(loc.error(
                v.span(),
                "version",
                format!(
                    "version {} is not supported; this cork reads version {MANIFEST_VERSION}",
                    v.get_ref()
                ),
            ));
        }
        Some(_) => {}
    }

    let name = bottle_name(loc, raw.bottle)?;

    let mut rules = Vec::new();
    let mut domains = Vec::new();
    if let Some(egress) = raw.egress {
        // Ask rules come last so that adding one leaves the other rules' ids as they were.
        let lists = [
            (Kind::Allow, egress.allow),
            (Kind::Deny, egress.deny),
            (Kind::Ask, egress.ask),
        ];
        for (kind, entries) in lists {
            for (index, entry) in entries.unwrap_or_default().into_iter().enumerate() {
                let Entry {
                    info,
                    domain_at,
                    inspect,
                    routes,
                } = rule(loc, kind, index, entry)?;
                if let (RuleTarget::Domain(pattern), Some((line, col))) = (&info.target, domain_at)
                {
                    domains.push(DomainRule {
                        rule_id: rule::rule_id(rules.len(), &info, origin)?,
                        pattern: pattern.clone(),
                        action: info.action,
                        ports: info.ports.clone(),
                        proto: info.proto,
                        inspect,
                        routes,
                        ask: kind == Kind::Ask,
                        line,
                        col,
                    });
                }
                rules.push(info);
            }
        }
    }

    let host_ports = match raw.loopback.and_then(|l| l.host_ports) {
        None => Vec::new(),
        Some(list) => host_ports(loc, list)?,
    };

    let dns = dns_config(loc, raw.dns)?;
    let tls = tls_config(loc, raw.tls)?;
    let credentials = credentials(loc, raw.credentials, &rules, &domains)?;
    let dlp = dlp_config(loc, raw.dlp)?;
    let (env, pass_at) = env_config(loc, raw.env)?;
    let files = files_config(loc, raw.files)?;
    let unix = unix_config(loc, raw.unix)?;
    let warnings = pass_warnings(origin, &pass_at, &credentials);

    Ok(Manifest {
        origin: origin.to_owned(),
        name,
        rules,
        domains,
        host_ports,
        dns,
        tls,
        credentials,
        dlp,
        env,
        files,
        unix,
        warnings,
    })
}

/// A `pass` entry that matches a credential's `value_env` cannot do what it seems to: the
/// real value never enters the bottle (the proxy swaps it in), whatever `pass` says.
fn pass_warnings(origin: &str, pass: &[PassAt], credentials: &[Credential]) -> Vec<ManifestError> {
    let mut out = Vec::new();
    for p in pass {
        for (i, c) in credentials.iter().enumerate() {
            if crate::glob::glob_match(&p.pattern, &c.value_env) {
                out.push(ManifestError {
                    origin: origin.to_owned(),
                    line: p.line,
                    col: p.col,
                    path: format!("env.pass[{}]", p.index),
                    message: format!(
                        "{:?} matches credentials[{i}].value_env {:?}: its real value never \
                         enters the bottle, which gets the placeholder in {:?} instead",
                        p.pattern, c.value_env, c.env
                    ),
                });
            }
        }
    }
    out
}

fn bottle_name(
    loc: &Locator<'_>,
    bottle: Option<Spanned<RawBottle>>,
) -> Result<String, ManifestError> {
    const PATH: &str = "bottle.name";
    let Some(bottle) = bottle else {
        return Err(loc.error(
            0..0,
            PATH,
            "missing; add a [bottle] table with `name = \"...\"`",
        ));
    };
    let span = bottle.span();
    let Some(name) = bottle.into_inner().name else {
        return Err(loc.error(span, PATH, "missing; add `name = \"...\"` to [bottle]"));
    };
    if !valid_name(name.get_ref()) {
        return Err(loc.error(
            name.span(),
            PATH,
            format!(
                "{:?} is not a valid bottle name: use 1-63 lowercase letters, digits and `-`, \
                 starting with a letter or digit",
                name.get_ref()
            ),
        ));
    }
    Ok(name.into_inner())
}

/// `[a-z0-9][a-z0-9-]{0,62}`: safe in cgroup, pin-path and netns names.
fn valid_name(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match name.as_bytes() {
        [first, rest @ ..] => {
            ok(*first) && rest.len() <= 62 && rest.iter().all(|&b| ok(b) || b == b'-')
        }
        [] => false,
    }
}

fn host_ports(
    loc: &Locator<'_>,
    list: Spanned<Vec<Spanned<i64>>>,
) -> Result<Vec<u16>, ManifestError> {
    let span = list.span();
    let mut ports = list
        .into_inner()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            user_port(*p.get_ref()).map_err(|e| {
                loc.error(p.span(), format!("loopback.host_ports[{i}]"), e.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    ports.sort_unstable();
    ports.dedup();
    if ports.len() > MAX_HOST_PORTS {
        return Err(loc.error(
            span,
            "loopback.host_ports",
            format!(
                "{} distinct ports, but the kernel map holds at most {MAX_HOST_PORTS}",
                ports.len()
            ),
        ));
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn bottle_names() {
        for good in ["a", "0", "agent-1", "a-", &"a".repeat(63)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-a", "Agent", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
