//! DLP: find secrets in the bytes a bottle sends, streaming, with bounded memory.
//!
//! This module owns the detectors (built-in credential formats, a generic high-entropy
//! assignment check, custom regexes from the manifest, and the *known secrets*: the real
//! credential values cork holds, in every encoding an agent could launder them through)
//! and the per-stream scanning state. It is pure: no I/O, no async.
//!
//! A [`Scanner`] is built once per policy and shared; each inspected stream (a URL, a header
//! block, a body, a WebSocket direction) gets its own [`StreamScan`]. Findings carry the
//! detector's name and a stream offset, never the matched bytes, so they can go straight
//! into audit events.
//!
//! Bodies reach the scanner through [`decode`], which undoes their `Content-Encoding`
//! as they stream. [`swap`] puts real credentials in place of the placeholders a bottle
//! holds, and back.
//!
//! # Semantics
//! Every detector's match length is bounded (at most [`MAX_MATCH_LEN`] bytes; checked when
//! the scanner is built). The findings of a stream are exactly what a leftmost,
//! non-overlapping search per detector over the whole stream would give, however the
//! stream is split into chunks. To get that, a match is reported only once enough bytes
//! follow it that later data cannot change it; [`StreamScan::settled`] tells up to which
//! offset that is, and [`StreamScan::finish`] reports the rest at end of stream. A proxy
//! that must block *before* forwarding a secret holds back the bytes past `settled()`.

mod blob;
mod catalog;
mod checks;
mod compiled;
pub mod decode;
mod detectors;
mod dfa;
mod escapes;
mod keyword_start;
mod known;
mod lazy_regex;
mod needles;
mod precision;
mod redact;
mod roots;
mod scanner;
mod search;
mod secret_names;
pub mod swap;
mod teddy;

#[cfg(test)]
mod tests;

pub use detectors::{Check, Detector, Family, Kind, Severity, builtin_detectors};
pub use redact::{REDACTION_MARKER, redact};
pub use scanner::{DetectorInfo, Scanner, StreamScan};

/// The longest match any detector may produce, in bytes. It bounds the per-stream
/// carry-over and how far findings lag behind the data fed.
pub const MAX_MATCH_LEN: usize = 4096;

/// Fragments of a known secret at least this long are found by default.
pub const DEFAULT_FRAGMENT_MIN_LEN: usize = 12;

/// Known secrets shorter than this are refused: they would match ordinary text.
pub const MIN_KNOWN_SECRET_LEN: usize = 8;

/// Known secrets longer than this are refused: their encodings (hex, URL-encoding) must
/// stay within [`MAX_MATCH_LEN`].
pub const MAX_KNOWN_SECRET_LEN: usize = MAX_MATCH_LEN / 3;

/// What a [`Scanner`] looks for.
#[derive(Debug, Clone)]
pub struct Config {
    /// Include [`builtin_detectors`].
    pub builtin: bool,
    /// Detectors from the manifest.
    pub custom: Vec<Detector>,
    /// Real credential values cork holds.
    pub known_secrets: Vec<KnownSecret>,
    /// Raw fragments of a known secret at least this long are findings too.
    pub fragment_min_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            builtin: true,
            custom: Vec::new(),
            known_secrets: Vec::new(),
            fragment_min_len: DEFAULT_FRAGMENT_MIN_LEN,
        }
    }
}

/// A real credential value. `Debug` never prints the value.
#[derive(Clone)]
pub struct KnownSecret {
    /// Names the secret in findings (`known-secret:<name>`): a credential or env var name.
    pub name: String,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for KnownSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownSecret")
            .field("name", &self.name)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .finish()
    }
}

/// One match: which detector, where in the stream, how long. Never the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Finding {
    /// Stream offset of the first matched byte.
    pub start: u64,
    pub len: usize,
    /// Detector name; `known-secret:<name>` for known secrets.
    pub detector: String,
}

impl Finding {
    /// Stream offset one past the last matched byte.
    pub fn end(&self) -> u64 {
        self.start + self.len as u64
    }
}

/// Why a [`Scanner`] could not be built. Each variant names the detector or secret at
/// fault, never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum DlpError {
    #[error("DLP detector {detector:?}: invalid regex")]
    InvalidRegex {
        detector: String,
        #[source]
        source: regex::Error,
    },
    #[error("DLP detector {detector:?}: cannot analyse regex")]
    AnalyseRegex {
        detector: String,
        #[source]
        source: Box<regex_syntax::Error>,
    },
    #[error(
        "DLP detector {detector:?}: matches may be longer than {max} bytes (or unbounded); \
         bound every repetition, e.g. {{8,256}} instead of + or *"
    )]
    UnboundedRegex { detector: String, max: usize },
    #[error("DLP detector {detector:?}: regex can match the empty string")]
    EmptyMatch { detector: String },
    #[error("DLP detector {detector:?}: empty keyword")]
    EmptyKeyword { detector: String },
    #[error("DLP detector {detector:?}: defined twice")]
    DuplicateDetector { detector: String },
    #[error("known secret {name:?}: {len} bytes is shorter than the minimum {min}")]
    KnownSecretTooShort {
        name: String,
        len: usize,
        min: usize,
    },
    #[error("known secret {name:?}: {len} bytes is longer than the maximum {max}")]
    KnownSecretTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("DLP: fragment_min_len {len} must be at least {min}")]
    FragmentTooShort { len: usize, min: usize },
    #[error("DLP: building the {what} automaton")]
    Automaton {
        what: &'static str,
        #[source]
        source: aho_corasick::BuildError,
    },
}
