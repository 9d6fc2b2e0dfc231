//! The `[dlp]` table: what the inspecting proxy does when a request carries a secret, and
//! the detectors an author adds to the built-in ones.
//!
//! ```toml
//! [dlp]
//! action = "block"          # "block" | "supervise" | "redact" | "log"; default "block"
//! approval_timeout = "5m"   # how long a `supervise` hold waits for an operator; default 5m
//! [dlp.actions]             # per detector id (built-in or custom)
//! jwt = "log"               # "block" | "supervise" | "redact" | "log" | "off"
//! [[dlp.detectors]]
//! name = "acme-order-id"    # [a-z0-9][a-z0-9-]{0,63}, unique
//! regex = "ACME-[0-9]{12}"
//! keywords = ["ACME-"]      # optional: the regex only runs where one occurs
//! ```
//!
//! Regexes are not compiled here (this crate has no regex engine); the DLP crate compiles
//! them and names the detector when one fails.

use std::time::Duration;

use toml::Spanned;

use crate::error::ManifestError;
use crate::locate::Locator;
use crate::route::HttpRoute;
use crate::schema::{RawDetector, RawDlp};

/// `dlp.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DlpAction {
    /// Refuse the request. The default: a secret that leaves cannot be called back.
    #[default]
    Block,
    /// Hold the request, nothing of it sent upstream, until an operator approves or
    /// denies it through the daemon (or `dlp.approval_timeout` denies it). Without a
    /// daemon there is nobody to ask: it acts as `Block`.
    Supervise,
    /// Replace the secret in the request and send it on.
    Redact,
    /// Send the request unchanged and report the finding.
    Log,
}

impl DlpAction {
    /// The manifest and audit spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DlpAction::Block => "block",
            DlpAction::Supervise => "supervise",
            DlpAction::Redact => "redact",
            DlpAction::Log => "log",
        }
    }

    /// How much an action holds a request back: block > supervise > redact > log (a
    /// request an operator could approve still carries what a `redact` finding would
    /// have cut, so the operator sees it whole and decides).
    fn rank(self) -> u8 {
        match self {
            DlpAction::Log => 0,
            DlpAction::Redact => 1,
            DlpAction::Supervise => 2,
            DlpAction::Block => 3,
        }
    }

    /// The stronger of two actions.
    pub fn max(self, other: DlpAction) -> DlpAction {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// How long a held request waits for an operator when the manifest does not say.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The longest `dlp.approval_timeout`: a held request keeps the bottle's client waiting
/// and its connection open, and clients give up long before an hour anyway.
pub const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Validated `[dlp]` settings; the default blocks and adds no detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlpConfig {
    pub action: DlpAction,
    /// `dlp.approval_timeout`: how long a `supervise` hold waits before it is denied.
    pub approval_timeout: Duration,
    /// `[[dlp.detectors]]`, in manifest order.
    pub detectors: Vec<CustomDetector>,
    /// `[dlp.actions]`, sorted by detector id.
    pub actions: Vec<DetectorAction>,
}

impl Default for DlpConfig {
    fn default() -> Self {
        DlpConfig {
            action: DlpAction::default(),
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
            detectors: Vec::new(),
            actions: Vec::new(),
        }
    }
}

/// One `[dlp.actions]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorAction {
    pub detector: DetectorRef,
    /// `None`: `"off"`, the detector's findings are ignored.
    pub action: Option<DlpAction>,
}

/// A detector id named in the manifest, where it is named: the DLP crate knows the
/// built-in ids, so `cork check` checks them there and reports this place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorRef {
    pub id: String,
    /// The manifest key naming it (`dlp.actions.jwt`, `egress.allow[0].http[1].dlp_skip[0]`).
    pub key: String,
    pub line: usize,
    pub col: usize,
}

impl DlpConfig {
    /// What to do with a finding of `detector` on a request that went by `route`:
    /// `None` when the finding is to be ignored. In order: the route's `dlp_skip`, an
    /// `"off"` in `[dlp.actions]`, the route's `dlp_action`, `[dlp.actions]`, `dlp.action`.
    /// Known secrets (`known-secret:<name>`, real credentials cork holds) always get
    /// `dlp.action`: no route or detector setting lets one through more easily.
    pub fn resolve(&self, route: Option<&HttpRoute>, detector: &str) -> Option<DlpAction> {
        if detector.starts_with("known-secret:") {
            return Some(self.action);
        }
        if route.is_some_and(|r| r.dlp_skip.iter().any(|d| d.id == detector)) {
            return None;
        }
        let own = self
            .actions
            .iter()
            .find(|a| a.detector.id == detector)
            .map(|a| a.action);
        match (own, route.and_then(|r| r.dlp_action)) {
            (Some(None), _) => None,
            (_, Some(route_action)) => Some(route_action),
            (Some(Some(a)), None) => Some(a),
            (None, None) => Some(self.action),
        }
    }
}

/// `"block"`, `"supervise"`, `"redact"`, `"log"` (`Some(Some(_))`) or `"off"` (`Some(None)`).
pub(crate) fn parse_action(text: &str) -> Option<Option<DlpAction>> {
    match text {
        "block" => Some(Some(DlpAction::Block)),
        "supervise" => Some(Some(DlpAction::Supervise)),
        "redact" => Some(Some(DlpAction::Redact)),
        "log" => Some(Some(DlpAction::Log)),
        "off" => Some(None),
        _ => None,
    }
}

/// A detector id in the manifest: the name shape is checked here, existence by `cork check`.
pub(crate) fn detector_ref(
    loc: &Locator<'_>,
    key: &str,
    id: Spanned<String>,
) -> Result<DetectorRef, ManifestError> {
    if !valid_name(id.get_ref()) {
        return Err(loc.error(
            id.span(),
            key,
            format!(
                "{:?} is not a detector id: ids are lowercase letters, digits and `-`",
                id.get_ref()
            ),
        ));
    }
    let (line, col) = loc.line_col(id.span().start);
    Ok(DetectorRef {
        id: id.into_inner(),
        key: key.to_string(),
        line,
        col,
    })
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

/// The actions a finding can get, as error messages list them.
pub(crate) const ACTIONS: &str = "\"block\", \"supervise\", \"redact\" or \"log\"";

/// `dlp.approval_timeout`: a duration (`"90s"`, `"5m"`), more than zero, at most
/// [`MAX_APPROVAL_TIMEOUT`].
fn approval_timeout(loc: &Locator<'_>, text: Spanned<String>) -> Result<Duration, ManifestError> {
    let bad = |why: String| loc.error(text.span(), "dlp.approval_timeout", why);
    let Some(d) = crate::duration::parse_duration(text.get_ref()) else {
        return Err(bad(format!(
            "{:?} is not a duration; write a number and a unit, e.g. \"90s\", \"5m\" or \"1h\"",
            text.get_ref()
        )));
    };
    if d.is_zero() || d > MAX_APPROVAL_TIMEOUT {
        return Err(bad(format!(
            "{:?} is out of range: a hold waits more than 0s and at most 1h",
            text.get_ref()
        )));
    }
    Ok(d)
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
        Some(text) => match parse_action(text.get_ref()) {
            Some(Some(action)) => action,
            _ => {
                return Err(loc.error(
                    text.span(),
                    "dlp.action",
                    format!("unknown action {:?}; expected {ACTIONS}", text.get_ref()),
                ));
            }
        },
    };
    let approval_timeout = match raw.approval_timeout {
        None => DEFAULT_APPROVAL_TIMEOUT,
        Some(text) => approval_timeout(loc, text)?,
    };
    let mut detectors: Vec<CustomDetector> = Vec::new();
    for (i, entry) in raw.detectors.unwrap_or_default().into_iter().enumerate() {
        let detector = detector(loc, &format!("dlp.detectors[{i}]"), entry, &detectors)?;
        detectors.push(detector);
    }
    let mut actions = Vec::new();
    for (id, text) in raw.actions.unwrap_or_default() {
        let key = format!("dlp.actions.{id}");
        let Some(action) = parse_action(text.get_ref()) else {
            return Err(loc.error(
                text.span(),
                key,
                format!(
                    "unknown action {:?}; expected {ACTIONS} or \"off\"",
                    text.get_ref()
                ),
            ));
        };
        if !valid_name(&id) {
            return Err(loc.error(
                text.span(),
                key,
                format!("{id:?} is not a detector id: ids are lowercase letters, digits and `-`"),
            ));
        }
        // The value's place: the key shares its line.
        let (line, col) = loc.line_col(text.span().start);
        let detector = DetectorRef { id, key, line, col };
        actions.push(DetectorAction { detector, action });
    }
    Ok(DlpConfig {
        action,
        approval_timeout,
        detectors,
        actions,
    })
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

impl crate::Policy {
    /// Every detector id the manifest names (`[dlp.actions]` keys, routes' `dlp_skip`),
    /// with its place, for `cork check` to check against the scanner's detectors.
    pub fn dlp_detector_refs(&self) -> Vec<&DetectorRef> {
        self.dlp
            .actions
            .iter()
            .map(|a| &a.detector)
            .chain(
                self.domains
                    .iter()
                    .flat_map(|d| d.routes.iter().flat_map(|r| r.dlp_skip.iter())),
            )
            .collect()
    }
}
