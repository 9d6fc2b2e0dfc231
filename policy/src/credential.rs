//! `[[credentials]]`: secrets the bottle never holds. The bottle gets a placeholder in an
//! environment variable; the inspecting proxy swaps it for the real value (read from
//! cork's own environment) in one header of requests to one host.
//!
//! ```toml
//! [[credentials]]
//! domain = "api.example.test"
//! header = "x-api-key"
//! placeholder = "cork-placeholder-acme"
//! env = "ACME_API_KEY"
//! value_env = "ACME_REAL_KEY"
//! ```
//!
//! The swap happens only in flows the proxy inspects, so a credential for a name that no
//! inspected rule allows could never be used, and is refused.

use toml::Spanned;

use crate::compile::Policy;
use crate::domain::{DomainPattern, normalise_query};
use crate::domain_rule::{DomainRule, DomainVerdict, verdict};
use crate::error::ManifestError;
use crate::locate::Locator;
use crate::plan::RuleId;
use crate::rule::RuleInfo;
use crate::schema::RawCredential;

/// One validated `[[credentials]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The one host the real value is sent to: lowercase, no trailing dot.
    pub domain: String,
    /// The request header the real value goes in, lowercase.
    pub header: String,
    /// What the bottle holds and sends instead of the real value.
    pub placeholder: String,
    /// The variable set to `placeholder` inside the bottle.
    pub env: String,
    /// The variable of cork's own environment that holds the real value.
    pub value_env: String,
    /// 1-based manifest line of the `domain` value.
    pub line: usize,
    /// 1-based column of the `domain` value.
    pub col: usize,
}

impl Policy {
    /// Whether requests to `host` (any case, trailing dot optional) go through the
    /// inspecting proxy, where a credential for it can be swapped in.
    pub fn inspects(&self, host: &str) -> bool {
        normalise_query(host).is_some_and(|h| inspected(&h, &self.rules, &self.domains).is_ok())
    }

    /// Adds a credential that cork made itself rather than read from the manifest (see
    /// `cork_agent::secrets::providers`), checked like a manifest entry: its host
    /// inspected, its header one the proxy may set, its placeholder and `env` its own.
    /// `env` may equal `value_env` here: the bottle's variable is replaced, not shadowed.
    pub fn add_credential(&mut self, c: Credential) -> Result<(), String> {
        inspected(&c.domain, &self.rules, &self.domains)?;
        check_header(&c.header)?;
        check_placeholder(&c.placeholder, &self.credentials)?;
        if self.credentials.iter().any(|o| o.env == c.env) {
            return Err(format!("{:?} is already a credential's `env`", c.env));
        }
        self.credentials.push(c);
        Ok(())
    }

    /// The credentials to swap in requests to `host` (any case, trailing dot optional),
    /// in manifest order.
    pub fn credentials_for(&self, host: &str) -> impl Iterator<Item = &Credential> {
        let host = normalise_query(host);
        self.credentials
            .iter()
            .filter(move |c| host.as_deref() == Some(c.domain.as_str()))
    }
}

/// Placeholder length bounds, in bytes: long enough not to occur by chance in a request,
/// short enough to scan for cheaply.
const PLACEHOLDER_LEN: std::ops::RangeInclusive<usize> = 8..=256;

/// Headers the proxy cannot let a credential set: they frame the message, route it or
/// belong to one hop, so the proxy owns them.
const RESERVED_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
];

/// Validates every `[[credentials]]` entry against each other and against the domain
/// rules, which must inspect the credential's host.
pub(crate) fn credentials(
    loc: &Locator<'_>,
    raw: Option<Vec<Spanned<RawCredential>>>,
    rules: &[RuleInfo],
    domains: &[DomainRule],
) -> Result<Vec<Credential>, ManifestError> {
    let mut out: Vec<Credential> = Vec::new();
    for (i, entry) in raw.unwrap_or_default().into_iter().enumerate() {
        let id = format!("credentials[{i}]");
        let span = entry.span();
        let raw = entry.into_inner();
        let required = |key: &str, value: Option<Spanned<String>>, what: &str| {
            value.ok_or_else(|| {
                loc.error(
                    span.clone(),
                    format!("{id}.{key}"),
                    format!("missing; add `{key} = \"...\"`, {what}"),
                )
            })
        };
        let domain = required("domain", raw.domain, "the host the real value is sent to")?;
        let header = required("header", raw.header, "the header the real value goes in")?;
        let placeholder = required(
            "placeholder",
            raw.placeholder,
            "what the bottle holds and sends instead",
        )?;
        let env = required(
            "env",
            raw.env,
            "the variable set to the placeholder in the bottle",
        )?;
        let value_env = required(
            "value_env",
            raw.value_env,
            "the variable of cork's environment holding the real value",
        )?;
        let at = |value: &Spanned<String>, key: &str, why: String| {
            loc.error(value.span(), format!("{id}.{key}"), why)
        };

        let name = host(domain.get_ref()).map_err(|why| at(&domain, "domain", why))?;
        inspected(&name, rules, domains).map_err(|why| at(&domain, "domain", why))?;
        check_header(header.get_ref()).map_err(|why| at(&header, "header", why))?;
        check_placeholder(placeholder.get_ref(), &out)
            .map_err(|why| at(&placeholder, "placeholder", why))?;
        check_env_name(env.get_ref()).map_err(|why| at(&env, "env", why))?;
        check_env_name(value_env.get_ref()).map_err(|why| at(&value_env, "value_env", why))?;
        if let Some(j) = out.iter().position(|c| &c.env == env.get_ref()) {
            return Err(at(
                &env,
                "env",
                format!(
                    "{:?} is also the `env` of credentials[{j}]; the bottle has one value per \
                     variable",
                    env.get_ref()
                ),
            ));
        }
        if env.get_ref() == value_env.get_ref() {
            return Err(at(
                &value_env,
                "value_env",
                format!(
                    "{:?} is also `env`; name the variable holding the real value differently \
                     from the one the bottle sees, so that neither is mistaken for the other",
                    value_env.get_ref()
                ),
            ));
        }

        let (line, col) = loc.line_col(domain.span().start);
        out.push(Credential {
            domain: name,
            header: header.into_inner().to_ascii_lowercase(),
            placeholder: placeholder.into_inner(),
            env: env.into_inner(),
            value_env: value_env.into_inner(),
            line,
            col,
        });
    }
    Ok(out)
}

/// A credential's `domain`: one exact host name, normalised.
fn host(text: &str) -> Result<String, String> {
    match text.parse::<DomainPattern>() {
        Ok(DomainPattern::Exact(name)) => Ok(name),
        Ok(DomainPattern::Suffix(_)) => Err(format!(
            "{text:?} is a wildcard; a credential goes to exactly one host, since every name \
             under a wildcard would receive the real value (add one entry per host)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Why the proxy would never inspect a flow to `name`, if it would not. `pub(crate)` for
/// `compile.rs`, which checks hand-built manifests too.
pub(crate) fn inspected(
    name: &str,
    rules: &[RuleInfo],
    domains: &[DomainRule],
) -> Result<(), String> {
    let rule_path = |rule_id: RuleId| {
        rules
            .get(rule_id as usize)
            .map_or_else(|| format!("rule {rule_id}"), |r| r.id.clone())
    };
    let why = match verdict(domains, name) {
        DomainVerdict::NoMatch => "no domain allow rule matches it".to_owned(),
        DomainVerdict::Deny { rule_id } => format!("{} denies it", rule_path(rule_id)),
        DomainVerdict::Allow { rule_id } => {
            let inspects = domains
                .iter()
                .find(|d| d.rule_id == rule_id)
                .is_some_and(DomainRule::inspects_any_port);
            if inspects {
                return Ok(());
            }
            format!(
                "{}, the rule that allows it, inspects no port (it has `inspect = false`, or \
                 covers neither TCP port 80 nor 443 without `inspect = true`)",
                rule_path(rule_id)
            )
        }
    };
    Err(format!(
        "{name:?} is not inspected: {why}; the real value is only ever sent through the \
         inspecting proxy"
    ))
}

/// An RFC 9110 token the proxy may set.
fn check_header(header: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if header.is_empty() || !header.bytes().all(tchar) {
        return Err(format!(
            "{header:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    let lower = header.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(format!(
            "{header:?} frames, routes or belongs to a single hop of the request, so the \
             proxy owns it; a credential cannot go in it"
        ));
    }
    Ok(())
}

fn check_placeholder(placeholder: &str, earlier: &[Credential]) -> Result<(), String> {
    if !PLACEHOLDER_LEN.contains(&placeholder.len())
        || !placeholder.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "{placeholder:?} is not {}-{} bytes of printable ASCII without white space; the \
             proxy finds it byte for byte in headers, and a short one could occur by chance",
            PLACEHOLDER_LEN.start(),
            PLACEHOLDER_LEN.end()
        ));
    }
    for (j, other) in earlier.iter().enumerate() {
        let other = other.placeholder.as_str();
        let clash = if other == placeholder {
            "is also the placeholder of"
        } else if other.contains(placeholder) {
            "is part of the placeholder of"
        } else if placeholder.contains(other) {
            "contains the placeholder of"
        } else {
            continue;
        };
        return Err(format!(
            "{placeholder:?} {clash} credentials[{j}]; the proxy could not tell which real \
             value to put in"
        ));
    }
    Ok(())
}

/// `[A-Za-z_][A-Za-z0-9_]{0,127}`: a variable every shell and `env` can set.
fn check_env_name(name: &str) -> Result<(), String> {
    let ok = match name.as_bytes() {
        [first, rest @ ..] => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.len() <= 127
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        [] => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an environment variable name: 1-128 letters, digits and `_`, \
             not starting with a digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names() {
        for good in ["x-api-key", "Authorization", "x_k.1~"] {
            assert_eq!(check_header(good), Ok(()), "{good}");
        }
        for bad in ["", "x api", "x:y", "é", "Host", "TE", "proxy-authorization"] {
            assert!(check_header(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_names() {
        for good in ["A", "_", "ACME_API_KEY", "a1", &"A".repeat(128)] {
            assert_eq!(check_env_name(good), Ok(()), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "É", &"A".repeat(129)] {
            assert!(check_env_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders() {
        assert_eq!(check_placeholder("12345678", &[]), Ok(()));
        assert_eq!(check_placeholder(&"x".repeat(256), &[]), Ok(()));
        for bad in [
            "1234567",
            "cork placeholder",
            "cork\tplaceholder",
            "cørk-placeholder",
        ] {
            assert!(check_placeholder(bad, &[]).is_err(), "{bad:?}");
        }
        assert!(check_placeholder(&"x".repeat(257), &[]).is_err());
    }
}
