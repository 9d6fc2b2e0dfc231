//! [`LazyRegex`]: a detector's regex, compiled the first time a scan needs it.

use std::sync::OnceLock;

use regex::bytes::Regex;

/// A regex compiled when first asked for. Most detectors never run (their keywords never
/// occur in what a bottle sends), and compiling all 317 built-ins, twice each, was most of
/// building a scanner: ~150 ms of every bottle's start, once for the command's
/// environment and once more for the inspecting proxy. What is analysed up front (the
/// parse, match lengths, keyword starts) is unchanged.
#[derive(Debug)]
pub(super) struct LazyRegex {
    pattern: String,
    compiled: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    pub(super) fn new(pattern: String) -> Self {
        LazyRegex {
            pattern,
            compiled: OnceLock::new(),
        }
    }

    /// Compiled now, for a pattern whose errors must surface at setup.
    pub(super) fn compiled(pattern: &str) -> Result<Self, regex::Error> {
        let regex = Regex::new(pattern)?;
        Ok(LazyRegex {
            pattern: pattern.to_owned(),
            compiled: OnceLock::from(Some(regex)),
        })
    }

    /// The pattern as written (the anchored DFA is built from it).
    pub(super) fn pattern(&self) -> &str {
        &self.pattern
    }

    /// `None` only for a pattern that does not compile: never for a built-in (the unit
    /// test `every_builtin_compiles` compiles each), nor for a custom detector (compiled
    /// at construction).
    pub(super) fn get(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| Regex::new(&self.pattern).ok())
            .as_ref()
    }
}
