//! The scanner (shared, immutable) and per-stream scanning state.
//!
//! A stream keeps a carry-over buffer: the bytes from a little before the earliest offset
//! where an unreported match could still start, up to the end of the data fed. A match is
//! reported once at least `max_len + LOOKAROUND` bytes of its detector follow its start:
//! from then on no later byte can change it (matches are bounded, and `\b` looks one
//! character ahead). So the carry-over never exceeds [`Scanner::max_carry`], and the
//! findings do not depend on how the stream was split.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::detectors::Compiled;
use super::known::KnownSet;
use super::{Config, DlpError, Finding, MIN_KNOWN_SECRET_LEN, builtin_detectors};

/// Bytes of context kept around a match for look-around assertions (`\b`, `(?m)^`),
/// enough for one UTF-8 character each side.
const LOOKAROUND: usize = 8;

/// Built from a [`Config`] once per policy; cheap to share between streams (`Arc`).
#[derive(Debug)]
pub struct Scanner {
    detectors: Vec<Compiled>,
    /// Keyword prefilter over every detector's keywords (ASCII case-insensitive).
    keywords: Option<AhoCorasick>,
    /// Keyword pattern id → the detectors it wakes.
    keyword_owners: Vec<Vec<usize>>,
    /// Detectors with no keywords: they always run.
    always: Vec<bool>,
    known: Option<KnownSet>,
    max_carry: usize,
}

impl Scanner {
    pub fn new(config: &Config) -> Result<Scanner, DlpError> {
        if config.fragment_min_len < MIN_KNOWN_SECRET_LEN {
            return Err(DlpError::FragmentTooShort {
                len: config.fragment_min_len,
                min: MIN_KNOWN_SECRET_LEN,
            });
        }
        let mut defs = if config.builtin {
            builtin_detectors()
        } else {
            Vec::new()
        };
        defs.extend(config.custom.iter().cloned());
        let mut detectors: Vec<Compiled> = Vec::with_capacity(defs.len());
        for d in &defs {
            if detectors.iter().any(|c| c.name == d.name) {
                return Err(DlpError::DuplicateDetector {
                    detector: d.name.clone(),
                });
            }
            detectors.push(Compiled::new(d)?);
        }

        let mut words: Vec<String> = Vec::new();
        let mut keyword_owners: Vec<Vec<usize>> = Vec::new();
        for (i, d) in detectors.iter().enumerate() {
            for k in &d.keywords {
                let k = k.to_ascii_lowercase();
                match words.iter().position(|w| *w == k) {
                    Some(p) => keyword_owners[p].push(i),
                    None => {
                        words.push(k);
                        keyword_owners.push(vec![i]);
                    }
                }
            }
        }
        let keywords = if words.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&words)
                    .map_err(|source| DlpError::Automaton {
                        what: "keyword",
                        source,
                    })?,
            )
        };
        let always = detectors.iter().map(|d| d.keywords.is_empty()).collect();
        let known = KnownSet::new(&config.known_secrets, config.fragment_min_len)?;

        let longest = detectors
            .iter()
            .map(|d| d.max_len)
            .chain(known.as_ref().map(|k| k.max_len))
            .max()
            .unwrap_or(0);
        Ok(Scanner {
            detectors,
            keywords,
            keyword_owners,
            always,
            known,
            max_carry: longest + 2 * LOOKAROUND,
        })
    }

    /// A fresh per-stream state.
    pub fn stream(&self) -> StreamScan<'_> {
        StreamScan {
            scanner: self,
            buf: Vec::new(),
            base: 0,
            next: vec![0; self.detectors.len()],
            known_next: 0,
        }
    }

    /// The most bytes a [`StreamScan`] carries over between chunks.
    pub fn max_carry(&self) -> usize {
        self.max_carry
    }

    /// Names of the regex detectors, in order (known secrets not included).
    pub fn detector_names(&self) -> impl Iterator<Item = &str> {
        self.detectors.iter().map(|d| d.name.as_str())
    }

    /// Which detectors have a keyword in `hay` (or no keywords at all).
    fn wanted(&self, hay: &[u8]) -> Vec<bool> {
        let mut wanted = self.always.clone();
        let Some(ac) = &self.keywords else {
            return wanted;
        };
        let mut left = wanted.iter().filter(|w| !**w).count();
        for m in ac.find_overlapping_iter(hay) {
            for &d in &self.keyword_owners[m.pattern().as_usize()] {
                if !wanted[d] {
                    wanted[d] = true;
                    left -= 1;
                }
            }
            if left == 0 {
                break;
            }
        }
        wanted
    }
}

/// Scanning state for one stream. Memory: at most [`Scanner::max_carry`] bytes carried
/// over, plus the chunk being fed.
#[derive(Debug)]
pub struct StreamScan<'s> {
    scanner: &'s Scanner,
    /// Stream bytes `base .. base + buf.len()`.
    buf: Vec<u8>,
    base: u64,
    /// Per detector: the stream offset where its next search starts.
    next: Vec<u64>,
    known_next: u64,
}

impl StreamScan<'_> {
    /// Scans the next chunk of the stream; returns the findings that became certain,
    /// sorted by offset. Each match is reported once, by this call or a later one.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Finding> {
        self.buf.extend_from_slice(chunk);
        let out = self.scan(false);
        self.trim();
        out
    }

    /// Ends the stream: reports every match not yet reported.
    pub fn finish(mut self) -> Vec<Finding> {
        self.scan(true)
    }

    /// Stream offset of the end of the data fed so far.
    pub fn position(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Every finding that starts before this offset has been reported: bytes before it can
    /// be forwarded under a `block` policy.
    pub fn settled(&self) -> u64 {
        self.next
            .iter()
            .copied()
            .chain(self.scanner.known.as_ref().map(|_| self.known_next))
            .min()
            .unwrap_or_else(|| self.position())
    }

    /// Bytes currently carried over (never more than [`Scanner::max_carry`] after a feed).
    pub fn carried(&self) -> usize {
        self.buf.len()
    }

    fn scan(&mut self, last: bool) -> Vec<Finding> {
        let sc = self.scanner;
        let end = self.position();
        let base = self.base;
        let hay = &self.buf[..];
        // A match starting at or before `horizon` cannot change with more data.
        let horizon = |max_len: usize| {
            if last {
                end
            } else {
                end.saturating_sub((max_len + LOOKAROUND) as u64)
            }
        };
        let idx = |off: u64| usize::try_from(off - base).unwrap_or(usize::MAX);
        let mut out = Vec::new();

        let wanted = sc.wanted(hay);
        for (i, d) in sc.detectors.iter().enumerate() {
            let h = horizon(d.max_len);
            let mut at = self.next[i];
            if wanted[i] {
                while at < end {
                    let Some((m, ok)) = d.find_at(hay, idx(at)) else {
                        break;
                    };
                    let start = base + m.start as u64;
                    if start > h {
                        break;
                    }
                    at = base + m.end as u64;
                    if ok {
                        out.push(Finding {
                            start,
                            len: m.len(),
                            detector: d.name.clone(),
                        });
                    }
                }
            }
            self.next[i] = at.max(h);
        }

        if let Some(k) = &sc.known {
            let h = horizon(k.max_len);
            let mut at = self.known_next;
            while at < end {
                let Some((m, name)) = k.find_at(hay, idx(at)) else {
                    break;
                };
                let start = base + m.start as u64;
                if start > h {
                    break;
                }
                at = base + m.end as u64;
                out.push(Finding {
                    start,
                    len: m.len(),
                    detector: name.to_string(),
                });
            }
            self.known_next = at.max(h);
        }
        out.sort();
        out
    }

    /// Drops bytes no future search can need.
    fn trim(&mut self) {
        let keep_from = self.settled().saturating_sub(LOOKAROUND as u64);
        if keep_from > self.base {
            let n = usize::try_from(keep_from - self.base).unwrap_or(usize::MAX);
            self.buf.drain(..n.min(self.buf.len()));
            self.base += n as u64;
        }
    }
}
