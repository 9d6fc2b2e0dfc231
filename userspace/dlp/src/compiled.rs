//! A detector compiled for the scanner: its regex (compiled on first use), match lengths,
//! where matches start relative to keywords, the anchored forms and DFAs the scanner's
//! fast paths use, and the hit rejection that runs before any regex.

use std::sync::OnceLock;

use super::detectors::{CONTEXT, Check, Detector, Family, Kind, Severity};
use super::dfa::AnchoredDfa;
use super::keyword_start::{KeywordStart, keyword_start};
use super::lazy_regex::LazyRegex;
use super::{DlpError, MAX_MATCH_LEN};
use super::{blob, checks};

/// A detector ready to run.
#[derive(Debug)]
pub(super) struct Compiled {
    pub name: String,
    pub title: String,
    pub family: Family,
    pub kind: Kind,
    pub severity: Severity,
    pub keywords: Vec<String>,
    regex: LazyRegex,
    pub check: Check,
    /// A match whose subject lies inside a base64 blob is chance, not a token (see
    /// `blob`): set for the built-in self-identifying formats that a blob can spell by
    /// chance (a short keyword of base64 characters) and whose check does not make a
    /// chance match negligible (a checksum, a structure that decodes).
    pub blob_filter: bool,
    /// Longest possible match, in bytes.
    pub max_len: usize,
    /// How far before a keyword occurrence a match can start: 0 when every match starts
    /// with one of the keywords, else `max_len`.
    pub lead: usize,
    /// Every match starts with one of the keywords exactly (same case), so the prefilter
    /// need not fold case for this detector.
    pub starts_exact: bool,
    /// `\A(?:regex)`, when every match starts with a keyword and the regex has no
    /// look-around: then a match at a keyword start depends only on the bytes from there,
    /// and an anchored search stops as soon as the match fails, instead of running on.
    anchored: Option<LazyRegex>,
    /// The same anchored search as a DFA, built on first use (most detectors never get
    /// that far); `None` inside when it would be too big.
    dfa: OnceLock<Option<AnchoredDfa>>,
    /// The parsed regex, for the rejecting DFA.
    hir: regex_syntax::hir::Hir,
    /// The DFA of [`Compiled::rejects`] (see [`AnchoredDfa::relaxed`]), built on first
    /// use.
    reject: OnceLock<Option<AnchoredDfa>>,
}

impl Compiled {
    pub fn new(d: &Detector) -> Result<Compiled, DlpError> {
        let detector = || d.name.clone();
        if d.keywords.iter().any(|k| k.is_empty()) {
            return Err(DlpError::EmptyKeyword {
                detector: detector(),
            });
        }
        // A custom detector's regex is compiled now, so a bad one is refused at setup; a
        // built-in's on first use (every one is compiled by a unit test).
        let regex = if d.family == Family::Custom {
            LazyRegex::compiled(&d.regex).map_err(|source| DlpError::InvalidRegex {
                detector: detector(),
                source,
            })?
        } else {
            LazyRegex::new(d.regex.clone())
        };
        // regex::bytes parses with UTF-8 mode off; analyse it the same way.
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(&d.regex)
            .map_err(|source| DlpError::AnalyseRegex {
                detector: detector(),
                source: Box::new(source),
            })?;
        let props = hir.properties();
        let max_len = match props.maximum_len() {
            Some(n) if n <= MAX_MATCH_LEN => n,
            _ => {
                return Err(DlpError::UnboundedRegex {
                    detector: detector(),
                    max: MAX_MATCH_LEN,
                });
            }
        };
        if props.minimum_len() == Some(0) {
            return Err(DlpError::EmptyMatch {
                detector: detector(),
            });
        }
        let start = keyword_start(&hir, &d.keywords);
        let lead = if start.is_some() { 0 } else { max_len };
        let anchored = if start.is_some() && props.look_set().is_empty() {
            anchored(&d.regex, &hir)
        } else {
            None
        };
        Ok(Compiled {
            name: d.name.clone(),
            title: d.title.clone(),
            family: d.family,
            kind: d.kind,
            severity: d.severity,
            keywords: d.keywords.clone(),
            regex,
            check: d.check,
            blob_filter: d.family != Family::Custom
                && d.kind == Kind::Specific
                && matches!(
                    d.check,
                    Check::Token
                        | Check::Entropy { .. }
                        | Check::Marker { .. }
                        | Check::Base64 { .. }
                )
                && d.keywords
                    .iter()
                    .any(|k| blob::spelled_by_chance(k.as_bytes())),
            max_len,
            lead,
            starts_exact: start == Some(KeywordStart::Exact),
            anchored,
            dfa: OnceLock::new(),
            hir,
            reject: OnceLock::new(),
        })
    }

    /// The first match at or after `at` in `hay[..limit]` and whether it passes the
    /// check; the match itself is returned so the scanner can move past it. The check may
    /// read up to [`CONTEXT`] bytes of `hay` before the match, the blob filter up to
    /// [`blob::REACH`] bytes of `hay` each side of it (past `limit` too).
    pub fn find_at(
        &self,
        hay: &[u8],
        at: usize,
        limit: usize,
    ) -> Option<(std::ops::Range<usize>, bool)> {
        let regex = self.regex.get()?;
        let searched = &hay[..limit];
        if self.check == Check::None {
            return regex.find_at(searched, at).map(|m| (m.range(), true));
        }
        // Most tries find nothing: only a match pays for the captures (an allocation).
        let start = regex.find_at(searched, at)?.start();
        let caps = regex.captures_at(searched, start)?;
        let whole = caps.get(0)?.range();
        let before = &hay[whole.start.saturating_sub(CONTEXT)..whole.start];
        let subject = caps.name("s").map_or(whole.clone(), |m| m.range());
        let ok = checks::passes(self.check, before, &caps) && !self.in_blob(hay, subject);
        Some((whole, ok))
    }

    /// Whether the blob filter applies and finds `subject` (a range of `hay`) inside a
    /// base64 blob. Runs only on a match that passed its check.
    fn in_blob(&self, hay: &[u8], subject: std::ops::Range<usize>) -> bool {
        self.blob_filter && blob::in_blob(hay, subject)
    }

    /// Whether no match can start at `at`, a keyword start in `hay`, whatever bytes follow
    /// `hay`: the detector's DFA dies before the end of `hay` (see [`AnchoredDfa::dies`]).
    /// `false` when it cannot tell: the detector's matches may start before their
    /// keywords, or it has no DFA. Most keyword hits in source code and configuration
    /// (`key`, `token`) are rejected here, before any search is set up for them.
    /// `keyword`: the index of the keyword found there, in the detector's list; the DFA
    /// skips it when every way the hit could spell it leads to one state.
    pub fn rejects(&self, hay: &[u8], at: usize, keyword: usize) -> bool {
        if self.lead != 0 || self.keywords.is_empty() {
            return false;
        }
        // Without an anchored form the regex may have look-around (or a form the anchored
        // regex could not take): start from the byte before, which is right either way.
        let look = self.anchored.is_none();
        self.reject
            .get_or_init(|| {
                AnchoredDfa::relaxed(&self.hir, self.max_len)
                    .map(|dfa| dfa.with_keywords(&self.keywords, self.starts_exact, look))
            })
            .as_ref()
            .is_some_and(|dfa| dfa.dies_after(hay, at, keyword, look))
    }

    /// The anchored search's DFA, built on first use.
    fn dfa(&self) -> Option<&AnchoredDfa> {
        self.dfa
            .get_or_init(|| AnchoredDfa::build(self.regex.pattern()))
            .as_ref()
    }

    pub fn has_anchored(&self) -> bool {
        self.anchored.is_some()
    }

    /// Like [`Compiled::find_at`] for a match starting exactly at `start` and ending by
    /// `limit`; `None` when there is none or the detector has no anchored form.
    pub fn find_anchored(
        &self,
        hay: &[u8],
        start: usize,
        limit: usize,
    ) -> Option<(std::ops::Range<usize>, bool)> {
        self.anchored_search(hay, start, limit, true)
    }

    /// [`Compiled::find_anchored`] without the DFA (tests compare them).
    #[cfg(test)]
    pub fn find_anchored_by_regex(
        &self,
        hay: &[u8],
        start: usize,
        limit: usize,
    ) -> Option<(std::ops::Range<usize>, bool)> {
        self.anchored_search(hay, start, limit, false)
    }

    fn anchored_search(
        &self,
        hay: &[u8],
        start: usize,
        limit: usize,
        use_dfa: bool,
    ) -> Option<(std::ops::Range<usize>, bool)> {
        let re = self.anchored.as_ref()?.get()?;
        let slice = &hay[start..limit];
        if self.check == Check::None {
            let dfa = use_dfa.then(|| self.dfa()).flatten();
            let end = match dfa.map(|d| d.end(slice)) {
                Some(Ok(end)) => end?,
                _ => re.find(slice)?.end(),
            };
            return Some((0..end, true));
        }
        // The hits that get this far (past `rejects`) mostly match: one capturing search
        // finds the match and its groups, where the DFA walk before it walked it twice.
        let caps = re.captures(slice)?;
        let end = caps.get(0)?.end();
        let before = &hay[start.saturating_sub(CONTEXT)..start];
        let subject = caps.name("s").map_or(0..end, |m| m.range());
        let ok = checks::passes(self.check, before, &caps)
            && !self.in_blob(hay, start + subject.start..start + subject.end);
        Some((0..end, ok))
    }
}

/// The anchored form of `regex`, if it parses to exactly `\A` followed by `hir` (a
/// pattern ending in an `(?x)` comment, say, would not: then the detector goes without).
/// Compiled on first use, like the detector's own regex.
fn anchored(regex: &str, hir: &regex_syntax::hir::Hir) -> Option<LazyRegex> {
    use regex_syntax::hir::{Hir, Look};
    let pattern = format!(r"\A(?:{regex})");
    let parsed = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(&pattern)
        .ok()?;
    if parsed != Hir::concat(vec![Hir::look(Look::Start), hir.clone()]) {
        return None;
    }
    Some(LazyRegex::new(pattern))
}

#[cfg(test)]
mod tests {
    use super::Compiled;
    use crate::detectors::builtin_detectors;

    /// Built-ins compile on first use, where a failure could only skip the detector: prove
    /// here that each one, and its anchored form, compiles.
    #[test]
    fn every_builtin_compiles() {
        for d in builtin_detectors() {
            let c = Compiled::new(&d).expect("a built-in detector is valid");
            assert!(
                c.regex.get().is_some(),
                "{}: regex does not compile",
                d.name
            );
            if let Some(a) = &c.anchored {
                assert!(
                    a.get().is_some(),
                    "{}: anchored form does not compile",
                    d.name
                );
            }
        }
    }

    /// A custom detector's bad regex is refused when the scanner is built, as before.
    #[test]
    fn custom_regex_errors_at_setup() {
        let d = crate::detectors::Detector::custom("acme", "ACME-(", &["ACME-"]);
        let err = Compiled::new(&d).expect_err("an unclosed group is refused");
        assert!(err.to_string().contains("acme"), "{err}");
    }
}
