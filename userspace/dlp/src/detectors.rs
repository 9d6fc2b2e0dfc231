//! Detector definitions: the built-in credential formats and the compiled form the
//! scanner runs.
//!
//! Patterns are written from the public token formats. Every built-in starts with `(?-u)`:
//! ASCII semantics keep `\b`, `\s` and case-insensitivity byte-local (Unicode case folding
//! would let `K` match the Kelvin sign and slip past the ASCII keyword prefilter).

use regex::bytes::Regex;

use super::{DlpError, MAX_MATCH_LEN};

/// A detector as configured: a name, a regex, and keywords that prefilter it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    pub name: String,
    /// ASCII case-insensitive literals; the regex runs only where one of them occurs.
    /// Every match of `regex` must contain one, or matches without one are missed.
    /// Empty: the regex always runs.
    pub keywords: Vec<String>,
    pub regex: String,
    /// Extra test on each match; custom detectors use [`Check::None`].
    pub check: Check,
}

/// A test a regex match must also pass to be a finding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    None,
    /// Capture group 1 must hold a letter and a digit, be at least `min_len` bytes, and
    /// have a Shannon entropy of at least `min_bits` per byte.
    Entropy {
        min_len: usize,
        min_bits: f64,
    },
}

impl Detector {
    /// A detector from the manifest: no extra check.
    pub fn custom(name: &str, regex: &str, keywords: &[&str]) -> Detector {
        Detector {
            name: name.to_string(),
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            regex: regex.to_string(),
            check: Check::None,
        }
    }
}

fn builtin(name: &str, keywords: &[&str], regex: &str) -> Detector {
    Detector::custom(name, regex, keywords)
}

/// The credential formats agents leak most.
pub fn builtin_detectors() -> Vec<Detector> {
    vec![
        builtin(
            "aws-access-key-id",
            &["AKIA", "ASIA", "ABIA", "ACCA"],
            r"(?-u)\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
        ),
        builtin(
            "aws-secret-access-key",
            &["secret"],
            r#"(?i-u)(?:aws[_.-]?)?secret[_.-]?(?:access[_.-]?)?key["']?\s{0,4}[:=]\s{0,4}["']?[A-Za-z0-9/+]{40}"#,
        ),
        builtin(
            "github-token",
            &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
            r"(?-u)\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})\b",
        ),
        builtin(
            "gitlab-token",
            &["glpat-"],
            r"(?-u)\bglpat-[A-Za-z0-9_-]{20,64}",
        ),
        builtin(
            "anthropic-api-key",
            &["sk-ant-"],
            r"(?-u)\bsk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_-]{32,256}",
        ),
        builtin(
            "openai-api-key",
            &["sk-"],
            r"(?-u)\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,256}|[A-Za-z0-9]{48}\b)",
        ),
        builtin(
            "slack-token",
            &["xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"],
            r"(?-u)\bxox[baprs]-[0-9]{6,16}-[0-9A-Za-z-]{8,200}",
        ),
        builtin(
            "stripe-live-key",
            &["sk_live_", "rk_live_"],
            r"(?-u)\b[sr]k_live_[0-9A-Za-z]{20,247}",
        ),
        builtin("npm-token", &["npm_"], r"(?-u)\bnpm_[A-Za-z0-9]{36}\b"),
        builtin(
            // The prefix is base64 of the macaroon header naming pypi.org.
            "pypi-token",
            &["pypi-AgEIcHlwaS5vcmc"],
            r"(?-u)pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,1000}",
        ),
        builtin("huggingface-token", &["hf_"], r"(?-u)\bhf_[A-Za-z]{34}\b"),
        builtin(
            // The header alone is enough evidence and keeps the match short.
            "private-key",
            &["PRIVATE KEY"],
            r"(?-u)-----BEGIN[ A-Z0-9]{0,40} PRIVATE KEY(?: BLOCK)?-----",
        ),
        builtin(
            // Header and payload are base64url JSON objects, so both start with `eyJ`.
            "jwt",
            &["eyJ"],
            r"(?-u)\beyJ[A-Za-z0-9_-]{8,1500}\.eyJ[A-Za-z0-9_-]{4,1500}\.[A-Za-z0-9_-]{16,900}",
        ),
        Detector {
            name: "generic-secret-assignment".to_string(),
            keywords: [
                "key",
                "secret",
                "token",
                "passw",
                "pwd",
                "credential",
                "auth",
            ]
            .iter()
            .map(|k| k.to_string())
            .collect(),
            regex: concat!(
                r#"(?i-u)(?:key|secret|token|passw(?:or)?d|pwd|credential|auth)[a-z0-9_-]{0,16}"#,
                r#"["']?\s{0,4}[:=]\s{0,4}["']?([A-Za-z0-9+/=_.~-]{16,256})"#
            )
            .to_string(),
            check: Check::Entropy {
                min_len: 16,
                min_bits: 3.5,
            },
        },
    ]
}

/// A detector ready to run.
#[derive(Debug)]
pub(super) struct Compiled {
    pub name: String,
    pub keywords: Vec<String>,
    pub regex: Regex,
    pub check: Check,
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
    anchored: Option<Regex>,
}

impl Compiled {
    pub fn new(d: &Detector) -> Result<Compiled, DlpError> {
        let detector = || d.name.clone();
        if d.keywords.iter().any(|k| k.is_empty()) {
            return Err(DlpError::EmptyKeyword {
                detector: detector(),
            });
        }
        let regex = Regex::new(&d.regex).map_err(|source| DlpError::InvalidRegex {
            detector: detector(),
            source,
        })?;
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
            keywords: d.keywords.clone(),
            regex,
            check: d.check,
            max_len,
            lead,
            starts_exact: start == Some(KeywordStart::Exact),
            anchored,
        })
    }

    /// Whether the match found starting at `at` in `hay` passes the check; the match
    /// itself is returned so the scanner can move past it.
    pub fn find_at(&self, hay: &[u8], at: usize) -> Option<(std::ops::Range<usize>, bool)> {
        match self.check {
            Check::None => self.regex.find_at(hay, at).map(|m| (m.range(), true)),
            Check::Entropy { min_len, min_bits } => {
                let caps = self.regex.captures_at(hay, at)?;
                let whole = caps.get(0)?.range();
                let ok = caps
                    .get(1)
                    .is_some_and(|v| looks_random(v.as_bytes(), min_len, min_bits));
                Some((whole, ok))
            }
        }
    }

    pub fn has_anchored(&self) -> bool {
        self.anchored.is_some()
    }

    /// Like [`Compiled::find_at`] for a match starting exactly at the start of `hay`;
    /// `None` when there is none or the detector has no anchored form.
    pub fn find_anchored(&self, hay: &[u8]) -> Option<(std::ops::Range<usize>, bool)> {
        let re = self.anchored.as_ref()?;
        let m = re.find(hay)?;
        match self.check {
            Check::None => Some((m.range(), true)),
            Check::Entropy { min_len, min_bits } => {
                let ok = re
                    .captures(&hay[..m.end()])
                    .and_then(|c| c.get(1))
                    .is_some_and(|v| looks_random(v.as_bytes(), min_len, min_bits));
                Some((m.range(), ok))
            }
        }
    }
}

/// The anchored form of `regex`, if it compiles to exactly `\A` followed by `hir` (a
/// pattern ending in an `(?x)` comment, say, would not: then the detector goes without).
fn anchored(regex: &str, hir: &regex_syntax::hir::Hir) -> Option<Regex> {
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
    Regex::new(&pattern).ok()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum KeywordStart {
    Exact,
    FoldedCase,
}

/// Whether every match of `hir` provably starts with one of `keywords`, exactly or ASCII
/// case-insensitively; the scanner then tries the regex only where a keyword starts.
/// Prefix literal extraction gives a finite set every match starts with; the limits are
/// raised so that case-insensitive keywords (2^n variants each) are spelled out in full.
fn keyword_start(hir: &regex_syntax::hir::Hir, keywords: &[String]) -> Option<KeywordStart> {
    let seq = regex_syntax::hir::literal::Extractor::new()
        .kind(regex_syntax::hir::literal::ExtractKind::Prefix)
        .limit_literal_len(64)
        .limit_total(8192)
        .extract(hir);
    let literals = seq.literals().filter(|l| !l.is_empty())?;
    let all = |same: fn(&[u8], &[u8]) -> bool| {
        literals.iter().all(|lit| {
            let lit = lit.as_bytes();
            keywords
                .iter()
                .any(|k| lit.len() >= k.len() && same(&lit[..k.len()], k.as_bytes()))
        })
    };
    if all(|a, b| a == b) {
        Some(KeywordStart::Exact)
    } else if all(|a, b| a.eq_ignore_ascii_case(b)) {
        Some(KeywordStart::FoldedCase)
    } else {
        None
    }
}

/// A letter, a digit, enough length, and enough Shannon entropy per byte.
pub(super) fn looks_random(v: &[u8], min_len: usize, min_bits: f64) -> bool {
    v.len() >= min_len
        && v.iter().any(u8::is_ascii_alphabetic)
        && v.iter().any(u8::is_ascii_digit)
        && shannon_bits(v) >= min_bits
}

/// Shannon entropy of `v` in bits per byte.
pub(super) fn shannon_bits(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        counts[usize::from(b)] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}
