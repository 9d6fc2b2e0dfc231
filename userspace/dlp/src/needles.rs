//! The needle pass: finds where each detector's keywords and each known-secret pattern
//! start, reading each stream byte a small fixed number of times however many detectors
//! there are.
//!
//! Known-secret patterns have their own exact automaton over the raw bytes. Detector
//! keywords are found in two levels, because no SIMD literal search takes hundreds of
//! patterns in one pass (and without SIMD, hundreds of keywords ran at a fifth of the
//! speed):
//! 1. *Roots*: a few dozen short strings, chosen when the scanner is built so that every
//!    keyword (lowercased) contains one, searched over a lowercased copy of the data:
//!    all at once by `teddy` where the CPU has AVX2, else by aho-corasick in groups of 32
//!    of one length. Roots are rare in ordinary traffic.
//! 2. At each root occurrence, the keywords assigned to that root that occur around it
//!    are found by walking back through a trie of their parts before the root (see
//!    `roots`) and comparing: case-insensitive keywords (`key`, `datadog_api_key`) on the
//!    lowercased copy, exact ones (token prefixes: `ghp_`, `AKIA`, ...) on the raw bytes
//!    too.
//!
//! Every keyword holds its root, so every keyword occurrence is found from the root
//! occurrence inside it. Roots in one aho-corasick group have one length, so no two
//! start at one position; restarting one byte after each hit finds every root occurrence.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};

use super::DlpError;
use super::detectors::Compiled;
use super::roots::{Entry, RootTrie};
use super::teddy::{Kernel, Lowered, RootFilter};

#[derive(Debug)]
pub(super) struct Needles {
    /// Known-secret patterns, over the raw bytes.
    known: Option<Set>,
    /// Every keyword, once (level 2).
    entries: Vec<Entry>,
    /// Level 1: where the roots (lowercased) occur.
    roots: RootSearch,
    /// Level 2: per root, its keywords.
    tries: Vec<RootTrie>,
    /// The deepest trie: how far before a root a keyword can start.
    depth: usize,
    /// Longest needle, in bytes: a hit closer than this to the end of the data may still
    /// be cut short.
    pub max_len: usize,
}

/// Roots per aho-corasick pass: Teddy's false candidates grow with the patterns per
/// bucket; 32 per pass was measured faster than 16, 24, 48, 64 or 128 with the built-in
/// detectors.
const ROOTS_PER_GROUP: usize = 32;

/// The level-1 search.
#[derive(Debug)]
enum RootSearch {
    /// Every root in one SIMD pass.
    Simd(RootFilter),
    /// Without AVX2: one aho-corasick searcher per group of roots of one length, each
    /// with the index of its first root.
    Groups(Vec<(Roots, usize)>),
}

/// A level-1 searcher: Teddy where the CPU has it, else an automaton.
#[derive(Debug)]
enum Roots {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

impl Roots {
    fn new(group: &[&[u8]]) -> Result<Roots, DlpError> {
        let packed = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostLongest)
            .builder()
            .extend(group)
            .build();
        if let Some(p) = packed {
            return Ok(Roots::Packed(p));
        }
        AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(group)
            .map(Roots::Automaton)
            .map_err(|source| DlpError::Automaton {
                what: "keyword root",
                source,
            })
    }

    /// The leftmost-longest root starting at or after `at`: (start, root index).
    fn find(&self, hay: &[u8], at: usize) -> Option<(usize, usize)> {
        let m = match self {
            Roots::Packed(p) => p.find_in(hay, aho_corasick::Span::from(at..hay.len()))?,
            Roots::Automaton(ac) => ac.find(Input::new(hay).span(at..hay.len()))?,
        };
        Some((m.start(), m.pattern().as_usize()))
    }
}

/// The known-secret patterns: one exact, leftmost-longest automaton (with Teddy when
/// there are few enough patterns).
#[derive(Debug)]
struct Set {
    ac: AhoCorasick,
    /// Pattern id → the longest known-secret pattern that is a prefix of it.
    known: Vec<usize>,
}

impl Needles {
    /// `None` when there are no needles. `known` lists the known-secret patterns; hits
    /// name them by index. `simd`: search roots with [`RootFilter`] and that kernel where
    /// the CPU runs it, else with aho-corasick (tests compare them).
    pub fn new(
        detectors: &[Compiled],
        known: &[&[u8]],
        simd: Option<Kernel>,
    ) -> Result<Option<Needles>, DlpError> {
        // One entry per distinct keyword (exact ones compare case too).
        let mut entries: Vec<Entry> = Vec::new();
        for (i, d) in detectors.iter().enumerate() {
            for k in &d.keywords {
                let lower = k.as_bytes().to_ascii_lowercase();
                let exact = d.starts_exact.then(|| k.as_bytes().to_vec());
                match entries
                    .iter_mut()
                    .find(|e| e.lower == lower && e.exact == exact)
                {
                    Some(e) => e.detectors.push(i),
                    None => entries.push(Entry {
                        lower,
                        exact,
                        detectors: vec![i],
                    }),
                }
            }
        }
        let known: Vec<&[u8]> = known.to_vec();
        let max_keyword = entries.iter().map(|e| e.lower.len()).max().unwrap_or(0);
        let max_len = known
            .iter()
            .map(|b| b.len())
            .max()
            .unwrap_or(0)
            .max(max_keyword);
        if max_len == 0 {
            return Ok(None);
        }
        let lowered: Vec<Vec<u8>> = entries.iter().map(|e| e.lower.clone()).collect();
        let mut chosen = choose_roots(&lowered);
        // Shortest first: groups of 4-byte roots then use Teddy's 4-byte masks, which
        // let fewer false candidates through than 3-byte ones.
        chosen.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        let find = |k: &[u8], r: &[u8]| k.windows(r.len()).position(|w| w == r);
        let mut tries: Vec<RootTrie> = chosen.iter().map(|_| RootTrie::default()).collect();
        for (i, e) in entries.iter().enumerate() {
            // Assigned to the first root chosen that it holds; every keyword holds one.
            if let Some((t, off)) = chosen
                .iter()
                .enumerate()
                .find_map(|(t, r)| find(&e.lower, r).map(|o| (t, o)))
            {
                tries[t].add(i, e, off, chosen[t].len());
            }
        }
        let roots = match simd.and_then(|k| RootFilter::new(&chosen, k)) {
            Some(filter) => RootSearch::Simd(filter),
            None => {
                let mut groups = Vec::new();
                // Groups of one root length each (`chosen` is sorted by length): a
                // group's Teddy masks are as long as its shortest root, and 4-byte masks
                // let far fewer false candidates through than 3-byte ones.
                let mut base = 0;
                while base < chosen.len() {
                    let len = chosen[base].len();
                    let same = chosen[base..].iter().take_while(|r| r.len() == len).count();
                    let group = &chosen[base..base + same.min(ROOTS_PER_GROUP)];
                    let patterns: Vec<&[u8]> = group.iter().map(Vec::as_slice).collect();
                    groups.push((Roots::new(&patterns)?, base));
                    base += group.len();
                }
                RootSearch::Groups(groups)
            }
        };
        Ok(Some(Needles {
            known: Set::new(&known)?,
            depth: tries.iter().map(RootTrie::depth).max().unwrap_or(0),
            entries,
            roots,
            tries,
            max_len,
        }))
    }

    /// Finds the needles starting in `from..until` of `hay` (they may run on to its end):
    /// calls `known(position, pattern)` with the longest known-secret pattern at each
    /// position where one starts, in order, and leaves in `scratch` each keyword start
    /// as (position, entry), in order but for a few bytes, and maybe more than once.
    /// `scratch` is kept by the caller so that scanning does not allocate.
    pub fn scan(
        &self,
        hay: &[u8],
        from: usize,
        until: usize,
        scratch: &mut Scratch,
        mut known: impl FnMut(usize, usize),
    ) {
        let rest = &hay[from..];
        let until = until - from;
        if let Some(set) = &self.known {
            set.scan(rest, until, |p, n| known(from + p, n));
        }
        let Scratch { lower, found } = scratch;
        found.clear();
        if self.entries.is_empty() {
            return;
        }
        lower.fill(rest);
        // A keyword starting before `until` has its root before `until + depth`.
        let end = until + self.depth;
        let mut root = |r: usize, t: usize| {
            self.tries[t].candidates(rest, lower.bytes(), r, until, |q, e| {
                found.push((from + q, e));
            });
        };
        match &self.roots {
            RootSearch::Simd(filter) => filter.find(lower, end, &mut root),
            RootSearch::Groups(groups) => {
                for (searcher, base) in groups {
                    let mut at = 0;
                    while let Some((r, id)) = searcher.find(lower.bytes(), at) {
                        if r >= end {
                            break;
                        }
                        root(r, base + id);
                        at = r + 1;
                    }
                }
            }
        }
    }

    /// The detectors with keyword entry `entry`.
    pub fn detectors(&self, entry: u32) -> &[usize] {
        &self.entries[entry as usize].detectors
    }
}

/// Per-stream scratch space of the needle pass.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The data, lowercased.
    lower: Lowered,
    /// Keyword starts found: (position, entry).
    found: Vec<(usize, u32)>,
}

impl Scratch {
    /// The keyword starts the last scan found: (position, entry).
    pub fn found(&self) -> &[(usize, u32)] {
        &self.found
    }
}

/// A small set of roots such that every keyword contains one: keywords of up to three
/// bytes are their own roots; then, greedily, the 4-byte substring held by the most
/// keywords not yet covered (4-byte roots let Teddy use its 4-byte masks).
fn choose_roots(keywords: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let find = |k: &[u8], r: &[u8]| k.windows(r.len()).position(|w| w == r);
    let mut roots: Vec<Vec<u8>> = keywords.iter().filter(|k| k.len() <= 3).cloned().collect();
    roots.sort();
    roots.dedup();
    let mut open: Vec<&[u8]> = keywords
        .iter()
        .map(Vec::as_slice)
        .filter(|k| roots.iter().all(|r| find(k, r).is_none()))
        .collect();
    while !open.is_empty() {
        let mut counts: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
        for k in &open {
            let mut seen: Vec<&[u8]> = Vec::new();
            for w in k.windows(4) {
                if !seen.contains(&w) {
                    seen.push(w);
                    *counts.entry(w).or_default() += 1;
                }
            }
        }
        // Prefer more keywords covered, then longer (rarer) roots, then bytewise order
        // so that the choice does not depend on hash order.
        let best = counts
            .into_iter()
            .max_by(|a, b| {
                (a.1, a.0.len())
                    .cmp(&(b.1, b.0.len()))
                    .then_with(|| b.0.cmp(a.0))
            })
            .map(|(w, _)| w.to_vec())
            // Every substring is common: the keyword is its own root.
            .unwrap_or_else(|| open[0].to_vec());
        open.retain(|k| find(k, &best).is_none());
        roots.push(best);
    }
    roots
}

impl Set {
    fn new(patterns: &[&[u8]]) -> Result<Option<Set>, DlpError> {
        let mut words: Vec<&[u8]> = patterns.to_vec();
        words.sort_unstable();
        words.dedup();
        if words.is_empty() {
            return Ok(None);
        }
        let known = words
            .iter()
            .map(|w| {
                patterns
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| w.starts_with(p))
                    .max_by_key(|(_, p)| p.len())
                    .map_or(0, |(n, _)| n)
            })
            .collect();
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .map_err(|source| DlpError::Automaton {
                what: "known-secret",
                source,
            })?;
        Ok(Some(Set { ac, known }))
    }

    /// Every position before `until` where a pattern starts, with the longest pattern
    /// starting there.
    fn scan(&self, hay: &[u8], until: usize, mut hit: impl FnMut(usize, usize)) {
        let mut at = 0;
        while at < until {
            let Some(m) = self.ac.find(Input::new(hay).span(at..hay.len())) else {
                break;
            };
            if m.start() >= until {
                break;
            }
            hit(m.start(), self.known[m.pattern().as_usize()]);
            at = m.start() + 1;
        }
    }
}
