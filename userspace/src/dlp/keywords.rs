//! The keyword prefilter: where in a stream each detector's keywords start.
//!
//! Each stream byte is searched once, by at most two leftmost-longest automata, both
//! case-sensitive so that aho-corasick can use its SIMD (Teddy) prefilter (it cannot for
//! an ASCII case-insensitive automaton, which made the old single pass the bottleneck):
//! one over the raw bytes for detectors whose matches start with a keyword exactly (the
//! token formats: `ghp_`, `AKIA`, ...), and one over an ASCII-lowercased copy for the
//! rest (`key`, `secret`, ...). Restarting one byte after each hit finds every position
//! where some keyword starts; every other keyword starting there is a prefix of the
//! longest one, so a pattern wakes the detectors of its prefixes too.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};

use super::DlpError;
use super::detectors::Compiled;

#[derive(Debug)]
pub(super) struct Keywords {
    /// Keywords of detectors whose matches start with one exactly, searched as they are.
    exact: Option<Set>,
    /// The others, lowercased, searched in lowercased bytes.
    folded: Option<Set>,
    /// Longest keyword, in bytes.
    pub max_len: usize,
}

#[derive(Debug)]
struct Set {
    ac: AhoCorasick,
    /// Pattern id → the detectors woken when it is the longest keyword at a position.
    owners: Vec<Vec<usize>>,
}

impl Keywords {
    /// `None` when no detector has keywords.
    pub fn new(detectors: &[Compiled]) -> Result<Option<Keywords>, DlpError> {
        let exact = Set::new(detectors, |d| d.starts_exact, |k| k.as_bytes().to_vec())?;
        let folded = Set::new(
            detectors,
            |d| !d.starts_exact,
            |k| k.to_ascii_lowercase().into_bytes(),
        )?;
        let max_len = detectors
            .iter()
            .flat_map(|d| d.keywords.iter().map(String::len))
            .max();
        Ok(max_len.map(|max_len| Keywords {
            exact,
            folded,
            max_len,
        }))
    }

    /// Calls `hit(position, detectors)` for each position in `from..until` of `hay` where
    /// a keyword starts, in order for each detector; keywords may run on to the end of
    /// `hay`. `lower` is scratch space, kept by the caller so that scanning does not
    /// allocate.
    pub fn scan(
        &self,
        hay: &[u8],
        from: usize,
        until: usize,
        lower: &mut Vec<u8>,
        mut hit: impl FnMut(usize, &[usize]),
    ) {
        if let Some(set) = &self.exact {
            set.scan(&hay[from..], until - from, |p, ds| hit(from + p, ds));
        }
        if let Some(set) = &self.folded {
            lower.clear();
            lower.extend(hay[from..].iter().map(u8::to_ascii_lowercase));
            set.scan(lower, until - from, |p, ds| hit(from + p, ds));
        }
    }
}

impl Set {
    fn new(
        detectors: &[Compiled],
        include: impl Fn(&Compiled) -> bool,
        form: impl Fn(&str) -> Vec<u8>,
    ) -> Result<Option<Set>, DlpError> {
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut direct: Vec<Vec<usize>> = Vec::new();
        for (i, d) in detectors.iter().enumerate().filter(|(_, d)| include(d)) {
            for k in &d.keywords {
                let k = form(k);
                match words.iter().position(|w| *w == k) {
                    Some(p) => direct[p].push(i),
                    None => {
                        words.push(k);
                        direct.push(vec![i]);
                    }
                }
            }
        }
        if words.is_empty() {
            return Ok(None);
        }
        let owners = words
            .iter()
            .map(|w| {
                let mut o: Vec<usize> = words
                    .iter()
                    .zip(&direct)
                    .filter(|(p, _)| w.starts_with(p))
                    .flat_map(|(_, ds)| ds.iter().copied())
                    .collect();
                o.sort_unstable();
                o.dedup();
                o
            })
            .collect();
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .map_err(|source| DlpError::Automaton {
                what: "keyword",
                source,
            })?;
        Ok(Some(Set { ac, owners }))
    }

    /// Every position before `until` where a word starts, with its detectors.
    fn scan(&self, hay: &[u8], until: usize, mut hit: impl FnMut(usize, &[usize])) {
        let mut at = 0;
        while at < until {
            let Some(m) = self.ac.find(Input::new(hay).span(at..hay.len())) else {
                break;
            };
            if m.start() >= until {
                break;
            }
            hit(m.start(), &self.owners[m.pattern().as_usize()]);
            at = m.start() + 1;
        }
    }
}
