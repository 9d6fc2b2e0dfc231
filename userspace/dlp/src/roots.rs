//! Keyword roots: the two-level keyword search of the needle pass (see `needles`).
//!
//! Every keyword (lowercased) holds a *root*, a short substring chosen when the scanner is
//! built so that a few dozen roots cover hundreds of keywords. The needle pass searches
//! the roots with SIMD; at each root occurrence, [`RootTrie::candidates`] finds which of
//! the keywords assigned to that root occur around it by walking a trie of their parts
//! before the root *backwards* from the occurrence (in ordinary text this stops after a
//! byte or two) and comparing the rest.

/// One keyword as the needle pass looks for it.
#[derive(Debug)]
pub(super) struct Entry {
    /// The keyword, lowercased.
    pub lower: Vec<u8>,
    /// The keyword as written, when it must match exactly (token prefixes).
    pub exact: Option<Vec<u8>>,
    /// Detectors with this keyword: (detector, index of the keyword in its list).
    pub detectors: Vec<(usize, usize)>,
}

/// The keywords assigned to one root, by the part of each before the root, reversed.
#[derive(Debug, Default)]
pub(super) struct RootTrie {
    nodes: Vec<Node>,
    /// Longest part before the root.
    depth: usize,
    /// The keywords' bytes, side by side: each lowercased, then as written if it must
    /// match exactly. Kept together so that comparing reads a few nearby cache lines.
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Node {
    /// The bytes the edges take, apart from where they lead (`next`, in the same order):
    /// a hot root's nodes have dozens of edges, searched as one short byte string.
    edges: Vec<u8>,
    next: Vec<u32>,
    /// Keywords whose part before the root ends here.
    keywords: Vec<Keyword>,
}

impl Node {
    /// Where the edge taking `b` leads.
    fn edge(&self, b: u8) -> Option<u32> {
        let i = self.edges.iter().position(|&e| e == b)?;
        self.next.get(i).copied()
    }
}

/// A keyword in its trie.
#[derive(Debug)]
struct Keyword {
    /// Index of its [`Entry`].
    entry: u32,
    /// Where its bytes start in [`RootTrie::bytes`].
    at: u32,
    len: u16,
    /// Where the part after the root starts: a root occurrence already matches the
    /// keyword up to there.
    tail: u16,
    /// Its bytes as written follow the lowercased ones, and must match too.
    exact: bool,
}

impl RootTrie {
    /// Assigns entry `index`, whose keyword holds the root (`root` bytes long) at
    /// `offset`. Keywords are at most 64 KiB (the scanner bounds them far lower).
    pub fn add(&mut self, index: usize, entry: &Entry, offset: usize, root: usize) {
        let lower = &entry.lower;
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut node = 0usize;
        for &b in lower[..offset].iter().rev() {
            node = match self.nodes[node].edge(b) {
                Some(next) => next as usize,
                None => {
                    self.nodes.push(Node::default());
                    let next = self.nodes.len() - 1;
                    self.nodes[node].edges.push(b);
                    self.nodes[node].next.push(next as u32);
                    next
                }
            };
        }
        let at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(lower);
        if let Some(exact) = &entry.exact {
            self.bytes.extend_from_slice(exact);
        }
        self.nodes[node].keywords.push(Keyword {
            entry: index as u32,
            at,
            len: lower.len() as u16,
            tail: (offset + root) as u16,
            exact: entry.exact.is_some(),
        });
        self.depth = self.depth.max(offset);
    }

    /// How far before a root occurrence a keyword assigned to it can start.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Calls `found(start, entry)` for each entry that occurs with its root at `r`:
    /// `lower` is the data lowercased, `raw` as it is; starts at or past `until` are
    /// left out.
    pub fn candidates(
        &self,
        raw: &[u8],
        lower: &[u8],
        r: usize,
        until: usize,
        mut found: impl FnMut(usize, u32),
    ) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        let mut back = 0;
        loop {
            let q = r - back;
            if q < until {
                for k in &node.keywords {
                    let (at, len, tail) = (k.at as usize, usize::from(k.len), usize::from(k.tail));
                    let end = q + len;
                    // The trie matched the part before the root; the searcher the root.
                    let matched = lower
                        .get(q + tail..end)
                        .is_some_and(|t| same(t, &self.bytes[at + tail..at + len]))
                        && (!k.exact || same(&raw[q..end], &self.bytes[at + len..at + 2 * len]));
                    if matched {
                        found(q, k.entry);
                    }
                }
            }
            back += 1;
            if back > r || back > self.depth {
                return;
            }
            let b = lower[r - back];
            match node.edge(b) {
                Some(next) => node = &self.nodes[next as usize],
                None => return,
            }
        }
    }
}

/// Four-byte strings frequent in benign developer traffic (URLs, code, configs,
/// lockfiles, docs), which a root should not be while a keyword holds another: a root
/// occurrence costs a trie walk even where no keyword is. Found on the test corpus's
/// benign payloads, where `.com` and `api_` were two roots out of 150 but a tenth of the
/// occurrences, nearly all without a keyword.
const COMMON: &[&[u8]] = &[
    b".com", b"com/", b"/api", b"api/", b"api_", b"http", b"www.", b"serv", b"erve", b"rver",
    b"ntry", b"tion", b"aaaa", b"acme",
];

/// A small set of roots such that every keyword contains one: keywords of up to three
/// bytes are their own roots; then, greedily, the 4-byte substring held by the most
/// keywords not yet covered (4-byte roots let Teddy use its 4-byte masks), and with
/// `avoid_common` one that is not in [`COMMON`] while there is such a one.
pub(super) fn choose_roots(keywords: &[Vec<u8>], avoid_common: bool) -> Vec<Vec<u8>> {
    let common = |w: &[u8]| avoid_common && COMMON.contains(&w);
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
        // Prefer substrings that are not common in ordinary text (see [`COMMON`]) if asked
        // to, then
        // more keywords covered, then longer (rarer) roots, then bytewise order so that
        // the choice does not depend on hash order.
        let best = counts
            .into_iter()
            .max_by(|a, b| {
                (!common(a.0), a.1, a.0.len())
                    .cmp(&(!common(b.0), b.1, b.0.len()))
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

/// Byte equality, inline: keywords are short, and a library call per comparison costs
/// more than the comparison.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}
