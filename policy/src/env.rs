//! The `[env]` table: which variables of the invoking environment reach the bottled
//! command, beyond cork's defaults (which the agent owns, in `cork_agent::secrets`).
//!
//! ```toml
//! [env]
//! pass = ["GITHUB_TOKEN"]        # keep these even though they look sensitive
//! scrub = ["MY_COMPANY_SECRET"]  # remove these too
//! ```
//!
//! Entries are variable names, exact and case-sensitive, with `*` and `?` wildcards.
//! `scrub` adds to cork's defaults; `pass` makes exceptions to both (so `scrub = ["MY_*"]`
//! with `pass = ["MY_PUBLIC"]` keeps `MY_PUBLIC`). The same entry in both lists is refused.

use toml::Spanned;

use crate::error::ManifestError;
use crate::glob::glob_match;
use crate::locate::Locator;
use crate::schema::RawEnv;

/// Validated `[env]`; the default passes and scrubs nothing beyond cork's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvConfig {
    /// `env.pass`, in manifest order.
    pub pass: Vec<String>,
    /// `env.scrub`, in manifest order.
    pub scrub: Vec<String>,
}

impl EnvConfig {
    /// The `pass` entry that keeps `name`, if any.
    pub fn passed_by(&self, name: &str) -> Option<&str> {
        self.pass
            .iter()
            .find(|p| glob_match(p, name))
            .map(String::as_str)
    }

    /// The `scrub` entry that removes `name`, if any.
    pub fn scrubbed_by(&self, name: &str) -> Option<&str> {
        self.scrub
            .iter()
            .find(|p| glob_match(p, name))
            .map(String::as_str)
    }
}

/// Where each `pass` entry is, for the warnings `compile.rs` gives about credentials.
pub(crate) struct PassAt {
    pub pattern: String,
    pub index: usize,
    pub line: usize,
    pub col: usize,
}

/// Validates `[env]`.
pub(crate) fn env_config(
    loc: &Locator<'_>,
    raw: Option<RawEnv>,
) -> Result<(EnvConfig, Vec<PassAt>), ManifestError> {
    let Some(raw) = raw else {
        return Ok((EnvConfig::default(), Vec::new()));
    };
    let pass = raw.pass.unwrap_or_default();
    let scrub = raw.scrub.unwrap_or_default();
    for (key, list) in [("pass", &pass), ("scrub", &scrub)] {
        for (i, entry) in list.iter().enumerate() {
            check_pattern(entry.get_ref())
                .map_err(|why| loc.error(entry.span(), format!("env.{key}[{i}]"), why))?;
        }
    }
    for (i, entry) in scrub.iter().enumerate() {
        if let Some(j) = pass.iter().position(|p| p.get_ref() == entry.get_ref()) {
            return Err(loc.error(
                entry.span(),
                format!("env.scrub[{i}]"),
                format!(
                    "{:?} is also env.pass[{j}]; a variable is either kept or removed",
                    entry.get_ref()
                ),
            ));
        }
    }
    let at = pass
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let (line, col) = loc.line_col(p.span().start);
            PassAt {
                pattern: p.get_ref().clone(),
                index,
                line,
                col,
            }
        })
        .collect();
    let strings = |l: Vec<Spanned<String>>| l.into_iter().map(Spanned::into_inner).collect();
    Ok((
        EnvConfig {
            pass: strings(pass),
            scrub: strings(scrub),
        },
        at,
    ))
}

/// A variable name with optional `*`/`?`: `[A-Za-z0-9_*?]{1,128}`. A name of any other
/// shape cannot be set by a shell, and `=` would end the name in `environ`.
fn check_pattern(p: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?');
    if p.is_empty() || p.len() > 128 || !p.chars().all(ok) {
        return Err(format!(
            "{p:?} is not a variable name: 1-128 letters, digits and `_`, with `*` or `?` as \
             wildcards"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for good in ["GITHUB_TOKEN", "MY_*", "*", "a?b", "_x1"] {
            assert_eq!(check_pattern(good), Ok(()), "{good}");
        }
        for bad in ["", "A-B", "A=B", "A B", "É", &"A".repeat(129)] {
            assert!(check_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lookups() {
        let c = EnvConfig {
            pass: vec!["GITHUB_*".into()],
            scrub: vec!["MY_SECRET".into()],
        };
        assert_eq!(c.passed_by("GITHUB_TOKEN"), Some("GITHUB_*"));
        assert_eq!(c.passed_by("GH_TOKEN"), None);
        assert_eq!(c.scrubbed_by("MY_SECRET"), Some("MY_SECRET"));
        assert_eq!(c.scrubbed_by("MY_SECRETS"), None);
    }
}
