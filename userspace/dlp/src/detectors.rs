//! Detector definitions: the built-in credential formats and the compiled form the
//! scanner runs.
//!
//! Patterns are written from the public token formats. Every built-in starts with `(?-u)`:
//! ASCII semantics keep `\b`, `\s` and case-insensitivity byte-local (Unicode case folding
//! would let `K` match the Kelvin sign and slip past the ASCII keyword prefilter).

use std::sync::{Arc, OnceLock};

use super::DlpError;
pub(super) use super::compiled::Compiled;

/// Bytes before a match its check may read (the name a value is assigned to); the
/// scanner keeps at least this many before any match it has yet to report.
pub(super) const CONTEXT: usize = 32;

/// A detector as configured: a stable id, a regex, keywords that prefilter it, and the
/// test each match must also pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    /// Stable id, reported in findings and named by the manifest (`[dlp.detector.<id>]`).
    pub name: String,
    /// What it finds, for people (`cork dlp scan`, docs).
    pub title: String,
    pub family: Family,
    pub kind: Kind,
    pub severity: Severity,
    /// ASCII case-insensitive literals; the regex runs only where one of them occurs.
    /// Every match of `regex` must contain one, or matches without one are missed.
    /// Empty: the regex always runs.
    pub keywords: Vec<String>,
    pub regex: String,
    /// Extra test on each match; custom detectors use [`Check::None`].
    pub check: Check,
}

/// How bad a leak of this credential is, reported in the proxy's audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The kind of credential, for grouping in reports and the corpus's per-family figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Cloud,
    ScmCi,
    Registry,
    Ai,
    Payment,
    Messaging,
    Observability,
    Saas,
    PrivateKey,
    /// URLs and connection strings with passwords, credential files (`.netrc`, ...).
    Connection,
    /// Card numbers.
    Pci,
    /// The context-gated `name = <high-entropy value>` check.
    Generic,
    /// `[[dlp.detectors]]` from the manifest.
    Custom,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Cloud => "cloud",
            Family::ScmCi => "scm-ci",
            Family::Registry => "registry",
            Family::Ai => "ai",
            Family::Payment => "payment",
            Family::Messaging => "messaging",
            Family::Observability => "observability",
            Family::Saas => "saas",
            Family::PrivateKey => "private-key",
            Family::Connection => "connection",
            Family::Pci => "pci",
            Family::Generic => "generic",
            Family::Custom => "custom",
        }
    }
}

/// Whether a format identifies itself (a prefix, a structure) or is only recognisable by
/// the name it is assigned to (`DATADOG_API_KEY=<32 hex>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Specific,
    Context,
}

/// A test a regex match must also pass to be a finding. The textual checks (token,
/// entropy, marker, checksum, Luhn) also refuse placeholders (`EXAMPLE`, `xxxx`,
/// `<your-token>`, runs, ...) in the *subject*: the capture group named `s` if the regex
/// has one, else the whole match; the generic and password checks have their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// Custom detectors: the regex alone decides.
    None,
    /// The placeholder filter alone.
    Token,
    /// The subject holds a letter and a digit, is at least `min_len` bytes, and has a
    /// Shannon entropy of at least `min_bits` per byte.
    Entropy { min_len: usize, min_bits: f64 },
    /// The gated generic assignment (see `precision`): group `n` is the name, `s` the value.
    Generic,
    /// The subject's last 6 characters are the base62 CRC32 of the 30 before them
    /// (GitHub and npm tokens).
    Crc32Base62,
    /// A JWT whose header decodes to a JSON object with an `alg`.
    Jwt,
    /// A PEM block: groups `b` and `e` (BEGIN and END labels) agree when END is present,
    /// and the body decodes as base64 to the structure its label announces.
    Pem,
    /// The subject is base64 (standard or URL-safe) of a JSON object.
    Base64Json,
    /// The subject is base64 of at least `min_bytes` bytes.
    Base64 { min_bytes: usize },
    /// The subject is base64 of printable `user:password` with both parts non-empty.
    BasicAuth,
    /// The subject is a password: not a placeholder, variable reference or mask.
    Password,
    /// The subject's digits pass the Luhn check (card numbers).
    Luhn,
    /// The subject is a Bech32 string with a valid checksum (age keys).
    Bech32,
    /// The subject's first dot-separated part is base64 of a numeric id (Discord).
    NumericId,
    /// Entropy as in [`Check::Entropy`], and the subject holds `marker`.
    Marker { marker: &'static str },
}

impl Detector {
    /// A detector from the manifest: no extra check.
    pub fn custom(name: &str, regex: &str, keywords: &[&str]) -> Detector {
        Detector {
            name: name.to_string(),
            title: name.to_string(),
            family: Family::Custom,
            kind: Kind::Specific,
            severity: Severity::High,
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            regex: regex.to_string(),
            check: Check::None,
        }
    }
}

/// The credential formats cork knows; see `catalog`.
pub fn builtin_detectors() -> Vec<Detector> {
    super::catalog::all()
}

/// The built-in detectors, analysed (parse, match lengths, keyword starts, anchored
/// forms): once per process, shared by every scanner. The analysis is most of building a
/// scanner (~90 ms in a release build), and one process builds several: the command's
/// environment and the inspecting proxy for each bottle, again when the daemon takes a
/// bottle back. Sharing also shares what the detectors compile on first use (regexes,
/// DFAs), which depends only on the pattern.
///
/// A failure is not remembered: the next call analyses again and fails the same way (the
/// built-ins are fixed, and a unit test proves they all pass).
pub(super) fn builtins() -> Result<&'static [Arc<Compiled>], DlpError> {
    static BUILTINS: OnceLock<Vec<Arc<Compiled>>> = OnceLock::new();
    if let Some(done) = BUILTINS.get() {
        return Ok(done);
    }
    let analysed = analyse_builtins()?;
    // Two threads may both analyse; the first to finish is kept, both results are equal.
    Ok(BUILTINS.get_or_init(|| analysed))
}

/// What [`builtins`] keeps, done now (tests and the construction timing call it). The
/// detectors are analysed independently, so on several threads (one per CPU, at most
/// four), each taking every n-th detector; the result keeps the catalogue's order.
pub(super) fn analyse_builtins() -> Result<Vec<Arc<Compiled>>, DlpError> {
    let all = builtin_detectors();
    for (i, d) in all.iter().enumerate() {
        if all[..i].iter().any(|e| e.name == d.name) {
            return Err(DlpError::DuplicateDetector {
                detector: d.name.clone(),
            });
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let mut slots: Vec<Option<Arc<Compiled>>> = vec![None; all.len()];
    std::thread::scope(|scope| -> Result<(), DlpError> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let all = &all;
                scope.spawn(move || {
                    (t..all.len())
                        .step_by(threads)
                        .map(|i| Ok((i, Arc::new(Compiled::new(&all[i])?))))
                        .collect::<Result<Vec<_>, DlpError>>()
                })
            })
            .collect();
        for worker in workers {
            // A panic in a worker is the caller's, as it would be on one thread.
            let done = worker
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            for (i, c) in done {
                slots[i] = Some(c);
            }
        }
        Ok(())
    })?;
    Ok(slots.into_iter().flatten().collect())
}
