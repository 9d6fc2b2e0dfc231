//! The `[dlp]` table: what the inspecting proxy does when a request carries a secret, and
//! the detectors an author adds to the built-in ones.
//!
//! ```toml
//! [dlp]
//! action = "block"          # "block" | "redact" | "log"; default "block"
//! [[dlp.detectors]]
//! name = "acme-order-id"    # [a-z0-9][a-z0-9-]{0,63}, unique
//! regex = "ACME-[0-9]{12}"
//! keywords = ["ACME-"]      # optional: the regex only runs where one occurs
//! ```
//!
//! Regexes are not compiled here (this crate has no regex engine); the DLP crate compiles
//! them and names the detector when one fails.

use toml::Spanned;

use crate::error::ManifestError;
use crate::locate::Locator;
use crate::schema::{RawDetector, RawDlp};

/// `dlp.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DlpAction {
    /// Refuse the request. The default: a secret that leaves cannot be called back.
    #[default]
    Block,
    /// Replace the secret in the request and send it on.
    Redact,
    /// Send the request unchanged and report the finding.
    Log,
}

/// Validated `[dlp]` settings; the default blocks and adds no detector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DlpConfig {
    pub action: DlpAction,
    /// `[[dlp.detectors]]`, in manifest order.
    pub detectors: Vec<CustomDetector>,
}

/// One `[[dlp.detectors]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomDetector {
    /// Unique among custom detectors; reported in findings.
    pub name: String,
    /// Not yet compiled; see the module docs.
    pub regex: String,
    /// Literal strings, each non-empty; empty means the regex runs everywhere.
    pub keywords: Vec<String>,
    /// 1-based manifest line of the `regex` value, where a compile error belongs.
    pub line: usize,
    /// 1-based column of the `regex` value.
    pub col: usize,
}

/// Validates `[dlp]`; an absent table gives the default.
pub(crate) fn dlp_config(
    loc: &Locator<'_>,
    raw: Option<Spanned<RawDlp>>,
) -> Result<DlpConfig, ManifestError> {
    let Some(raw) = raw.map(Spanned::into_inner) else {
        return Ok(DlpConfig::default());
    };
    let action = match raw.action {
        None => DlpAction::default(),
        Some(text) => match text.get_ref().as_str() {
            "block" => DlpAction::Block,
            "redact" => DlpAction::Redact,
            "log" => DlpAction::Log,
            other => {
                return Err(loc.error(
                    text.span(),
                    "dlp.action",
                    format!("unknown action {other:?}; expected \"block\", \"redact\" or \"log\""),
                ));
            }
        },
    };
    let mut detectors: Vec<CustomDetector> = Vec::new();
    for (i, entry) in raw.detectors.unwrap_or_default().into_iter().enumerate() {
        let detector = detector(loc, &format!("dlp.detectors[{i}]"), entry, &detectors)?;
        detectors.push(detector);
    }
    Ok(DlpConfig { action, detectors })
}

fn detector(
    loc: &Locator<'_>,
    id: &str,
    entry: Spanned<RawDetector>,
    earlier: &[CustomDetector],
) -> Result<CustomDetector, ManifestError> {
    let span = entry.span();
    let raw = entry.into_inner();
    let missing = |key: &str, what: &str| {
        loc.error(
            span.clone(),
            format!("{id}.{key}"),
            format!("missing; add `{key} = \"...\"`, {what}"),
        )
    };
    let name = raw
        .name
        .ok_or_else(|| missing("name", "the name findings report"))?;
    let regex = raw
        .regex
        .ok_or_else(|| missing("regex", "the pattern of the secret"))?;

    if !valid_name(name.get_ref()) {
        return Err(loc.error(
            name.span(),
            format!("{id}.name"),
            format!(
                "{:?} is not a detector name: use 1-64 lowercase letters, digits and `-`, \
                 starting with a letter or digit",
                name.get_ref()
            ),
        ));
    }
    if let Some(j) = earlier.iter().position(|d| &d.name == name.get_ref()) {
        return Err(loc.error(
            name.span(),
            format!("{id}.name"),
            format!(
                "{:?} is also the name of dlp.detectors[{j}]; findings must say which \
                 detector fired",
                name.get_ref()
            ),
        ));
    }
    if regex.get_ref().is_empty() {
        return Err(loc.error(
            regex.span(),
            format!("{id}.regex"),
            "an empty pattern matches everywhere; write the pattern of the secret",
        ));
    }

    let mut keywords = Vec::new();
    if let Some(list) = raw.keywords {
        if list.get_ref().is_empty() {
            // Absent means "run everywhere"; an empty list could be read as "never".
            return Err(loc.error(
                list.span(),
                format!("{id}.keywords"),
                "an empty list is ambiguous; omit `keywords` to run the regex everywhere",
            ));
        }
        for (k, keyword) in list.into_inner().into_iter().enumerate() {
            if keyword.get_ref().is_empty() {
                return Err(loc.error(
                    keyword.span(),
                    format!("{id}.keywords[{k}]"),
                    "an empty keyword occurs everywhere; remove it",
                ));
            }
            keywords.push(keyword.into_inner());
        }
    }

    let (line, col) = loc.line_col(regex.span().start);
    Ok(CustomDetector {
        name: name.into_inner(),
        regex: regex.into_inner(),
        keywords,
        line,
        col,
    })
}

/// `[a-z0-9][a-z0-9-]{0,63}`.
fn valid_name(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match name.as_bytes() {
        [first, rest @ ..] => {
            ok(*first) && rest.len() <= 63 && rest.iter().all(|&b| ok(b) || b == b'-')
        }
        [] => false,
    }
}
