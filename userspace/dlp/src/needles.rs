//! The needle pass: finds where each detector's keywords and each known-secret pattern
//! start, reading each stream byte a small fixed number of times however many detectors
//! and secrets there are.
//!
//! Needles are found in two levels, because no SIMD literal search takes hundreds of
//! patterns in one pass (and without SIMD, hundreds of keywords ran at a fifth of the
//! speed):
//! 1. *Roots*: short strings, chosen when the scanner is built so that every keyword
//!    (lowercased) contains one and every known-secret pattern one of its *anchors* (see
//!    `known`), searched over a lowercased copy of the data: all at once by `teddy` where
//!    the CPU has AVX2, else by aho-corasick in groups of up to 32 of one length. Roots
//!    are rare in ordinary traffic.
//! 2. At each root occurrence, the keywords assigned to that root that occur around it
//!    are found by walking back through a trie of their parts before the root (see
//!    `roots`) and comparing: case-insensitive keywords (`key`, `datadog_api_key`) on the
//!    lowercased copy, exact ones (token prefixes: `ghp_`, `AKIA`, ...) on the raw bytes
//!    too. Where an anchor matches exactly, an anchored automaton of all known-secret
//!    patterns runs at each start the anchor allows.
//!
//! Every needle holds its root, so every occurrence is found from the root occurrence
//! inside it. Roots in one aho-corasick group have one length, so no two start at one
//! position; restarting one byte after each hit finds every root occurrence.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Anchored, Input, MatchKind, StartKind};

use super::DlpError;
use super::detectors::Compiled;
use super::known::{Anchor, KnownSet};
use super::roots::{Entry, RootTrie, choose_roots};
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
    /// Per root, the known-secret anchors it stands for.
    anchors: Vec<Vec<Anchor>>,
    /// How far before a root a keyword or known-secret pattern can start.
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

/// The known-secret patterns: one exact, leftmost-longest automaton, run anchored where
/// an [`Anchor`] says a pattern may start.
#[derive(Debug)]
struct Set {
    ac: AhoCorasick,
    /// Pattern id → the longest known-secret pattern that is a prefix of it.
    known: Vec<usize>,
}

impl Needles {
    /// `None` when there are no needles. Hits name known-secret patterns by their index
    /// in `known`. `simd`: search roots with [`RootFilter`] and that kernel where the CPU
    /// runs it, else with aho-corasick (tests compare them).
    pub fn new(
        detectors: &[Arc<Compiled>],
        known: Option<&KnownSet>,
        simd: Option<Kernel>,
    ) -> Result<Option<Needles>, DlpError> {
        // One entry per distinct keyword (exact ones compare case too).
        let mut entries: Vec<Entry> = Vec::new();
        for (i, d) in detectors.iter().enumerate() {
            for (n, k) in d.keywords.iter().enumerate() {
                let lower = k.as_bytes().to_ascii_lowercase();
                let exact = d.starts_exact.then(|| k.as_bytes().to_vec());
                match entries
                    .iter_mut()
                    .find(|e| e.lower == lower && e.exact == exact)
                {
                    Some(e) => e.detectors.push((i, n)),
                    None => entries.push(Entry {
                        lower,
                        exact,
                        detectors: vec![(i, n)],
                    }),
                }
            }
        }
        let patterns: Vec<&[u8]> = known.map(|k| k.needles().collect()).unwrap_or_default();
        let max_keyword = entries.iter().map(|e| e.lower.len()).max().unwrap_or(0);
        let max_len = patterns
            .iter()
            .map(|b| b.len())
            .max()
            .unwrap_or(0)
            .max(max_keyword);
        if max_len == 0 {
            return Ok(None);
        }
        let lowered: Vec<Vec<u8>> = entries.iter().map(|e| e.lower.clone()).collect();
        // Steering roots off common substrings paid with the SIMD root filter but cost
        // aho-corasick's searchers more than it saved (measured on the throughput report).
        let mut chosen = choose_roots(&lowered, simd.is_some_and(Kernel::available));
        // Shortest first: groups of 4-byte roots then use Teddy's 4-byte masks, which
        // let fewer false candidates through than 3-byte ones.
        chosen.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        let find = |k: &[u8], r: &[u8]| k.windows(r.len()).position(|w| w == r);
        let mut roots: Vec<Root> = chosen
            .iter()
            .map(|r| Root {
                bytes: r.clone(),
                trie: RootTrie::default(),
                anchors: Vec::new(),
            })
            .collect();
        for (i, e) in entries.iter().enumerate() {
            // Assigned to the first root chosen that it holds; every keyword holds one.
            if let Some((t, off)) = chosen
                .iter()
                .enumerate()
                .find_map(|(t, r)| find(&e.lower, r).map(|o| (t, o)))
            {
                roots[t].trie.add(i, e, off, chosen[t].len());
            }
        }
        // Known-secret anchors are roots too (lowercased: the search folds case).
        for a in known.map(KnownSet::anchors).unwrap_or_default() {
            let bytes = a.bytes.to_ascii_lowercase();
            match roots.iter_mut().find(|r| r.bytes == bytes) {
                Some(r) => r.anchors.push(a),
                None => roots.push(Root {
                    bytes,
                    trie: RootTrie::default(),
                    anchors: vec![a],
                }),
            }
        }
        roots.sort_by(|a, b| (a.bytes.len(), &a.bytes).cmp(&(b.bytes.len(), &b.bytes)));
        let depth = roots
            .iter()
            .flat_map(|r| r.anchors.iter().map(|a| a.hi).chain([r.trie.depth()]))
            .max()
            .unwrap_or(0);
        let chosen: Vec<Vec<u8>> = roots.iter().map(|r| r.bytes.clone()).collect();
        let (tries, anchors): (Vec<RootTrie>, Vec<Vec<Anchor>>) =
            roots.into_iter().map(|r| (r.trie, r.anchors)).unzip();
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
                    // As few groups as the run needs, evenly filled.
                    let size = same.div_ceil(same.div_ceil(ROOTS_PER_GROUP));
                    let group = &chosen[base..base + same.min(size)];
                    let patterns: Vec<&[u8]> = group.iter().map(Vec::as_slice).collect();
                    groups.push((Roots::new(&patterns)?, base));
                    base += group.len();
                }
                RootSearch::Groups(groups)
            }
        };
        Ok(Some(Needles {
            known: Set::new(&patterns)?,
            depth,
            entries,
            roots,
            tries,
            anchors,
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
        let Scratch {
            lower,
            found,
            known: starts,
        } = scratch;
        found.clear();
        starts.clear();
        lower.fill(rest);
        // A needle starting before `until` has its root before `until + depth`.
        let end = until + self.depth;
        let mut root = |r: usize, t: usize| {
            self.tries[t].candidates(rest, lower.bytes(), r, until, |q, e| {
                found.push((from + q, e));
            });
            if let Some(set) = &self.known {
                for a in &self.anchors[t] {
                    set.starts(rest, r, until, a, starts);
                }
            }
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
        // Several anchors may point at one start.
        starts.sort_unstable();
        starts.dedup_by_key(|&mut (p, _)| p);
        for &(p, n) in starts.iter() {
            known(from + p, n);
        }
    }

    /// The detectors with keyword entry `entry`: (detector, index of the keyword in its
    /// list).
    pub fn detectors(&self, entry: u32) -> &[(usize, usize)] {
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
    /// Known-secret starts found: (position, pattern).
    known: Vec<(usize, usize)>,
}

impl Scratch {
    /// The keyword starts the last scan found: (position, entry).
    pub fn found(&self) -> &[(usize, u32)] {
        &self.found
    }
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
            .start_kind(StartKind::Anchored)
            .build(&words)
            .map_err(|source| DlpError::Automaton {
                what: "known-secret",
                source,
            })?;
        Ok(Some(Set { ac, known }))
    }

    /// Adds to `out` each start before `until` that anchor `a`, found (case folded) at
    /// `r` in `hay`, points at and where a pattern starts, with the longest pattern
    /// starting there.
    fn starts(
        &self,
        hay: &[u8],
        r: usize,
        until: usize,
        a: &Anchor,
        out: &mut Vec<(usize, usize)>,
    ) {
        if !hay[r..].starts_with(&a.bytes) {
            return;
        }
        for back in a.lo..=a.hi.min(r) {
            let p = r - back;
            if p >= until {
                continue;
            }
            let input = Input::new(hay).span(p..hay.len()).anchored(Anchored::Yes);
            if let Some(m) = self.ac.find(input) {
                out.push((p, self.known[m.pattern().as_usize()]));
            }
        }
    }
}

/// A root while the needle pass is built: its keywords and anchors.
struct Root {
    bytes: Vec<u8>,
    trie: RootTrie,
    anchors: Vec<Anchor>,
}
