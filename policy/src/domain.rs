//! Domain names as the manifest writes them (`api.example.test`, `*.pkg.example.test`) and
//! as DNS queries ask for them, normalised so that the two can be compared as strings.
//!
//! Manifest names are strict host names (LDH labels, RFC 1123 / RFC 5891 A-labels);
//! queried names are read a little more leniently (`_` is allowed, as in
//! `_acme-challenge.example.test`), because refusing to *match* a name only ever makes
//! the verdict stricter: no match is deny.

use std::fmt;
use std::str::FromStr;

/// Longest name in text form without the trailing dot (RFC 1035 §2.3.4 allows 255 octets
/// on the wire, which is 253 characters of dotted text).
pub(crate) const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub(crate) const MAX_LABEL_LEN: usize = 63;

/// What a domain rule matches. Names are stored lowercase, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DomainPattern {
    /// `domain = "api.example.test"`: exactly that name.
    Exact(String),
    /// `domain = "*.pkg.example.test"`, stored as `pkg.example.test`: every name with at
    /// least one more label on the left (`a.pkg.example.test`, `b.a.pkg.example.test`),
    /// but not `pkg.example.test` itself.
    Suffix(String),
}

/// Why manifest text is not a domain pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(
        "{text:?} contains non-ASCII characters; write internationalised labels in their \
         A-label form (xn--…), e.g. \"bücher.test\" as \"xn--bcher-kva.test\""
    )]
    NonAscii { text: String },
    #[error("{text:?} is {len} bytes long; a domain name has at most {MAX_NAME_LEN}")]
    TooLong { text: String, len: usize },
    #[error("{text:?} has an empty label; labels are separated by single dots")]
    EmptyLabel { text: String },
    #[error("{text:?} has a label of {len} bytes; a label has at most {MAX_LABEL_LEN}")]
    LabelTooLong { text: String, len: usize },
    #[error("{text:?} has {found:?} in a label; labels use letters, digits and `-`")]
    BadCharacter { text: String, found: char },
    #[error("{text:?} has the label {label:?}, which starts or ends with `-`")]
    Hyphen { text: String, label: String },
    #[error(
        "{text:?} is a single label; write a fully qualified name such as \"api.example.test\""
    )]
    SingleLabel { text: String },
    #[error(
        "{text:?} has `*` outside a whole leftmost label; a wildcard is written \
         \"*.example.test\""
    )]
    MisplacedWildcard { text: String },
    #[error(
        "{text:?} would match every name; write a wildcard below a domain, such as \
         \"*.example.test\""
    )]
    BareWildcard { text: String },
    #[error(
        "{text:?} would match a whole top-level domain; write a wildcard below a \
         registered name, such as \"*.example.test\""
    )]
    TopLevelWildcard { text: String },
}

impl DomainPattern {
    /// Whether this pattern matches the queried `name` (any case, trailing dot optional).
    /// Names that are not well-formed (see [`crate::Policy::match_domain`]) match nothing.
    pub fn matches(&self, name: &str) -> bool {
        normalise_query(name).is_some_and(|n| self.matches_normalised(&n))
    }

    /// [`DomainPattern::matches`] for a name already passed through [`normalise_query`].
    pub(crate) fn matches_normalised(&self, name: &str) -> bool {
        match self {
            DomainPattern::Exact(exact) => name == exact,
            DomainPattern::Suffix(suffix) => name
                .strip_suffix(suffix.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|left| !left.is_empty()),
        }
    }

    /// Orders matching patterns from most to least specific: an exact name first, then
    /// wildcards by the length of their suffix. Of two patterns that both match one name,
    /// the longer suffix is the one with more labels.
    pub(crate) fn specificity(&self) -> (bool, usize) {
        match self {
            DomainPattern::Exact(name) => (true, name.len()),
            DomainPattern::Suffix(suffix) => (false, suffix.len()),
        }
    }
}

impl fmt::Display for DomainPattern {
    /// The manifest spelling, normalised: `api.example.test`, `*.pkg.example.test`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(name) => f.write_str(name),
            DomainPattern::Suffix(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

impl FromStr for DomainPattern {
    type Err = DomainError;

    /// Reads a manifest `domain` value: a host name, or `*.` followed by one.
    fn from_str(text: &str) -> Result<Self, DomainError> {
        let err_text = || text.to_owned();
        if !text.is_ascii() {
            return Err(DomainError::NonAscii { text: err_text() });
        }
        let lower = text.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name.len() > MAX_NAME_LEN {
            return Err(DomainError::TooLong {
                text: err_text(),
                len: name.len(),
            });
        }
        if name == "*" {
            return Err(DomainError::BareWildcard { text: err_text() });
        }
        let (wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        if rest.contains('*') {
            return Err(DomainError::MisplacedWildcard { text: err_text() });
        }
        let mut labels = 0;
        for label in rest.split('.') {
            check_label(text, label)?;
            labels += 1;
        }
        match (wildcard, labels) {
            (true, 1) => Err(DomainError::TopLevelWildcard { text: err_text() }),
            (false, 1) => Err(DomainError::SingleLabel { text: err_text() }),
            (true, _) => Ok(DomainPattern::Suffix(rest.to_owned())),
            (false, _) => Ok(DomainPattern::Exact(rest.to_owned())),
        }
    }
}

/// One manifest label: 1-63 bytes of `[a-z0-9-]` (already lowercase), no `-` at either end.
fn check_label(text: &str, label: &str) -> Result<(), DomainError> {
    if label.is_empty() {
        return Err(DomainError::EmptyLabel {
            text: text.to_owned(),
        });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(DomainError::LabelTooLong {
            text: text.to_owned(),
            len: label.len(),
        });
    }
    if let Some(found) = label
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(DomainError::BadCharacter {
            text: text.to_owned(),
            found,
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(DomainError::Hyphen {
            text: text.to_owned(),
            label: label.to_owned(),
        });
    }
    Ok(())
}

/// A queried name in the form patterns are stored in: ASCII lowercase, one trailing dot
/// removed. `None` — which matches no rule — unless the name is at most 253 bytes of labels
/// of 1-63 bytes drawn from `[a-z0-9_-]` (any case). The DNS proxy passes names in dotted
/// text form; a label containing a dot cannot be expressed and must not be matched.
pub(crate) fn normalise_query(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let ok = name.len() <= MAX_NAME_LEN
        && name.split('.').all(|label| {
            (1..=MAX_LABEL_LEN).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<String, String> {
        text.parse::<DomainPattern>()
            .map(|p| format!("{p:?}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_and_normalises() {
        let cases = [
            ("api.example.test", "Exact(\"api.example.test\")"),
            ("API.Example.TEST.", "Exact(\"api.example.test\")"),
            ("xn--bcher-kva.test", "Exact(\"xn--bcher-kva.test\")"),
            ("a-b.0.test", "Exact(\"a-b.0.test\")"),
            ("*.pkg.example.test", "Suffix(\"pkg.example.test\")"),
            ("*.Example.Test.", "Suffix(\"example.test\")"),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).as_deref(), Ok(want), "{text}");
        }
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(longest.len(), 253);
        assert!(parse(&longest).is_ok());
        assert!(
            parse(&format!("{longest}.")).is_ok(),
            "the trailing dot is not counted"
        );
        assert!(parse(&format!("*.{}", &longest[2..])).is_ok());
    }

    #[test]
    fn refuses_bad_names() {
        let label = "a".repeat(63);
        let too_long = format!("{label}.{label}.{label}.{}", "b".repeat(62));
        let cases = [
            ("bücher.test", "non-ASCII"),
            ("", "empty label"),
            (".", "empty label"),
            ("a..test", "empty label"),
            (".a.test", "empty label"),
            ("a.test..", "empty label"),
            (&too_long, "254 bytes long"),
            (&format!("{label}a.test"), "a label of 64 bytes"),
            ("a_b.test", "'_' in a label"),
            ("a b.test", "' ' in a label"),
            ("-a.test", "starts or ends with `-`"),
            ("a.test-", "starts or ends with `-`"),
            ("localhost", "single label"),
            ("*", "would match every name"),
            ("*.", "would match every name"),
            ("*.test", "whole top-level domain"),
            ("*foo.test", "`*` outside a whole leftmost label"),
            ("a.*.test", "`*` outside a whole leftmost label"),
            ("*.*.test", "`*` outside a whole leftmost label"),
            ("a.test.*", "`*` outside a whole leftmost label"),
            ("**.a.test", "`*` outside a whole leftmost label"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err();
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn matching() {
        let exact: DomainPattern = "api.example.test".parse().unwrap();
        let wild: DomainPattern = "*.a.test".parse().unwrap();
        assert!(exact.matches("api.example.test"));
        assert!(exact.matches("API.example.test."));
        assert!(!exact.matches("x.api.example.test"));
        assert!(wild.matches("x.a.test"));
        assert!(wild.matches("Y.x.A.test."));
        assert!(wild.matches("_acme-challenge.a.test"));
        assert!(!wild.matches("a.test"));
        assert!(
            !wild.matches("xa.test"),
            "suffixes match on label boundaries"
        );
        assert!(!wild.matches(".a.test"));
        assert!(!wild.matches("x..a.test"));
        assert!(!wild.matches("b\u{fc}.a.test"));
    }

    #[test]
    fn queries() {
        assert_eq!(normalise_query("A.Test.").as_deref(), Some("a.test"));
        assert_eq!(normalise_query("test").as_deref(), Some("test"));
        for bad in ["", ".", "a..b", "a.b..", "*.a.b", "a b.c", "bü.test"] {
            assert_eq!(normalise_query(bad), None, "{bad:?}");
        }
        assert_eq!(normalise_query(&format!("{}.t", "a".repeat(64))), None);
    }
}
