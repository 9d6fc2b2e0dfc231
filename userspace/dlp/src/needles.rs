//! The needle pass: finds where each detector's keywords and each known-secret pattern
//! start, reading each stream byte once per automaton.
//!
//! Known-secret patterns and the keywords that match exactly (token prefixes: `ghp_`,
//! `AKIA`, ...) share one leftmost-longest automaton over the raw bytes, dispatched by
//! pattern id: a separate known-secret pass read every byte again and cost a third of the
//! scanning time. Keywords that match in any ASCII case (`key`, `secret`, ...) have a
//! second automaton over a lowercased copy. Both are case-sensitive so that aho-corasick
//! can use its SIMD (Teddy) prefilter, which it cannot for an ASCII case-insensitive
//! automaton. Folding everything into the lowercased pass was measured slower: Teddy
//! degrades sharply with the pattern count, and case-sensitive needles would then need
//! checking against the raw bytes at every hit.
//!
//! Restarting one byte after each hit finds every position where some needle starts.
//! There the automaton reports the longest needle; every other needle of the same
//! automaton starting there is a prefix of it, so each pattern stands for the needles
//! that are its prefixes too.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};

use super::DlpError;
use super::detectors::Compiled;

#[derive(Debug)]
pub(super) struct Needles {
    /// Exact keywords and known-secret patterns, over the raw bytes.
    raw: Option<Set>,
    /// Case-insensitive keywords, lowercased, over lowercased bytes.
    folded: Option<Set>,
    /// Longest needle, in bytes: a hit closer than this to the end of the data may still
    /// be cut short.
    pub max_len: usize,
}

#[derive(Debug)]
struct Set {
    ac: AhoCorasick,
    /// Pattern id → detectors with a keyword that is a prefix of it (may repeat).
    detectors: Vec<Vec<usize>>,
    /// Pattern id → the longest known-secret pattern that is a prefix of it.
    known: Vec<Option<usize>>,
}

/// One needle as configured.
enum Owner {
    Detector(usize),
    Known(usize),
}

impl Needles {
    /// `None` when there are no needles. `known` lists the known-secret patterns; hits
    /// name them by index.
    pub fn new(detectors: &[Compiled], known: &[&[u8]]) -> Result<Option<Needles>, DlpError> {
        let keywords = |exact: bool| {
            detectors
                .iter()
                .enumerate()
                .filter(move |(_, d)| d.starts_exact == exact)
                .flat_map(|(i, d)| d.keywords.iter().map(move |k| (k.as_bytes(), i)))
        };
        let raw: Vec<(Vec<u8>, Owner)> = keywords(true)
            .map(|(k, i)| (k.to_vec(), Owner::Detector(i)))
            .chain(
                known
                    .iter()
                    .enumerate()
                    .map(|(n, b)| (b.to_vec(), Owner::Known(n))),
            )
            .collect();
        let folded: Vec<(Vec<u8>, Owner)> = keywords(false)
            .map(|(k, i)| (k.to_ascii_lowercase(), Owner::Detector(i)))
            .collect();
        let max_len = raw.iter().chain(&folded).map(|(b, _)| b.len()).max();
        Ok(match max_len {
            None => None,
            Some(max_len) => Some(Needles {
                raw: Set::new(&raw)?,
                folded: Set::new(&folded)?,
                max_len,
            }),
        })
    }

    /// Calls `hit(position, detectors, known)` for each position in `from..until` of `hay`
    /// where a needle starts: the detectors with a keyword starting there (may repeat) and
    /// the longest known-secret pattern starting there. Positions come in order for each
    /// detector and for the known secrets (not across them). Needles may run on to the end
    /// of `hay`. `lower` is scratch space, kept by the caller so that scanning does not
    /// allocate.
    pub fn scan(
        &self,
        hay: &[u8],
        from: usize,
        until: usize,
        lower: &mut Vec<u8>,
        mut hit: impl FnMut(usize, &[usize], Option<usize>),
    ) {
        if let Some(set) = &self.raw {
            set.scan(&hay[from..], until - from, |p, ds, k| hit(from + p, ds, k));
        }
        if let Some(set) = &self.folded {
            lower.clear();
            lower.extend(hay[from..].iter().map(u8::to_ascii_lowercase));
            set.scan(lower, until - from, |p, ds, k| hit(from + p, ds, k));
        }
    }
}

impl Set {
    fn new(needles: &[(Vec<u8>, Owner)]) -> Result<Option<Set>, DlpError> {
        let mut words: Vec<&[u8]> = needles.iter().map(|(b, _)| b.as_slice()).collect();
        words.sort_unstable();
        words.dedup();
        if words.is_empty() {
            return Ok(None);
        }
        let prefixes = |w: &[u8]| {
            needles
                .iter()
                .filter(|(b, _)| w.starts_with(b))
                .map(|(b, o)| (b.len(), o))
                .collect::<Vec<_>>()
        };
        let mut detectors = Vec::with_capacity(words.len());
        let mut known = Vec::with_capacity(words.len());
        for w in &words {
            let p = prefixes(w);
            detectors.push(
                p.iter()
                    .filter_map(|(_, o)| match o {
                        Owner::Detector(d) => Some(*d),
                        Owner::Known(_) => None,
                    })
                    .collect(),
            );
            known.push(
                p.iter()
                    .filter_map(|(len, o)| match o {
                        Owner::Known(n) => Some((*len, *n)),
                        Owner::Detector(_) => None,
                    })
                    .max_by_key(|&(len, _)| len)
                    .map(|(_, n)| n),
            );
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .map_err(|source| DlpError::Automaton {
                what: "needle",
                source,
            })?;
        Ok(Some(Set {
            ac,
            detectors,
            known,
        }))
    }

    /// Every position before `until` where a needle starts, with what starts there.
    fn scan(&self, hay: &[u8], until: usize, mut hit: impl FnMut(usize, &[usize], Option<usize>)) {
        let mut at = 0;
        while at < until {
            let Some(m) = self.ac.find(Input::new(hay).span(at..hay.len())) else {
                break;
            };
            if m.start() >= until {
                break;
            }
            let id = m.pattern().as_usize();
            hit(m.start(), &self.detectors[id], self.known[id]);
            at = m.start() + 1;
        }
    }
}
