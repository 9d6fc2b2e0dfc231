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
    /// Detectors with this keyword.
    pub detectors: Vec<usize>,
}

/// The keywords assigned to one root, by the part of each before the root, reversed.
#[derive(Debug, Default)]
pub(super) struct RootTrie {
    nodes: Vec<Node>,
    /// Longest part before the root.
    depth: usize,
}

#[derive(Debug, Default)]
struct Node {
    edges: Vec<(u8, u32)>,
    /// Entries whose part before the root ends here: (entry index, its offset).
    entries: Vec<u32>,
}

impl RootTrie {
    /// Assigns entry `index`, whose keyword holds the root at `offset`.
    pub fn add(&mut self, index: usize, lower: &[u8], offset: usize) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut node = 0usize;
        for &b in lower[..offset].iter().rev() {
            node = match self.nodes[node].edges.iter().find(|(e, _)| *e == b) {
                Some(&(_, next)) => next as usize,
                None => {
                    self.nodes.push(Node::default());
                    let next = self.nodes.len() - 1;
                    self.nodes[node].edges.push((b, next as u32));
                    next
                }
            };
        }
        self.nodes[node].entries.push(index as u32);
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
        entries: &[Entry],
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
                for &e in &node.entries {
                    let entry = &entries[e as usize];
                    let end = q + entry.lower.len();
                    let same = lower.get(q..end) == Some(entry.lower.as_slice())
                        && entry
                            .exact
                            .as_ref()
                            .is_none_or(|x| raw.get(q..end) == Some(x.as_slice()));
                    if same {
                        found(q, e);
                    }
                }
            }
            back += 1;
            if back > r || back > self.depth {
                return;
            }
            let b = lower[r - back];
            match node.edges.iter().find(|(e, _)| *e == b) {
                Some(&(_, next)) => node = &self.nodes[next as usize],
                None => return,
            }
        }
    }
}
