//! Credential swapping: the bottle only ever holds placeholders; on the way out the proxy
//! puts the real credential in their place, and on the way back it puts the placeholder
//! back wherever the real value is echoed.
//!
//! Replacement is leftmost-longest and non-overlapping, so that a placeholder which is a
//! prefix of another never splits it. [`SwapStream`] gives, for any chunking of a stream,
//! exactly what [`Swapper::swap_all`] gives for the whole of it, holding back fewer bytes
//! than the longest `from` value. Nothing here prints a value: `Debug` shows counts and
//! lengths, errors show pair indexes.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Why a [`Swapper`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("credential swap pair {index}: empty value to replace")]
    EmptyFrom { index: usize },
    #[error("credential swap pairs {first} and {index}: same value to replace")]
    DuplicateFrom { first: usize, index: usize },
    #[error("credential swap: building the automaton")]
    Automaton {
        #[source]
        source: aho_corasick::BuildError,
    },
}

/// Replaces each `from` value by its `to` value. Built once per policy and direction.
pub struct Swapper {
    ac: AhoCorasick,
    /// Pattern id → replacement.
    to: Vec<Vec<u8>>,
    /// Kept to build the reverse direction.
    from: Vec<Vec<u8>>,
    max_from: usize,
}

impl fmt::Debug for Swapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Swapper")
            .field("pairs", &self.to.len())
            .field("max_from", &self.max_from)
            .finish_non_exhaustive()
    }
}

impl Swapper {
    pub fn new(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Swapper, SwapError> {
        let (from, to): (Vec<Vec<u8>>, Vec<Vec<u8>>) = pairs.into_iter().unzip();
        for (index, f) in from.iter().enumerate() {
            if f.is_empty() {
                return Err(SwapError::EmptyFrom { index });
            }
            // Quadratic, but a policy holds a handful of credentials.
            if let Some(first) = from[..index].iter().position(|g| g == f) {
                return Err(SwapError::DuplicateFrom { first, index });
            }
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&from)
            .map_err(|source| SwapError::Automaton { source })?;
        Ok(Swapper {
            ac,
            max_from: from.iter().map(Vec::len).max().unwrap_or(0),
            to,
            from,
        })
    }

    /// The swapper for the other direction (`to` → `from`).
    pub fn reverse(&self) -> Result<Swapper, SwapError> {
        Swapper::new(
            self.to
                .iter()
                .cloned()
                .zip(self.from.iter().cloned())
                .collect(),
        )
    }

    /// `input` with every occurrence replaced; `None` when there is none, so callers keep
    /// the original (header values, URLs) without copying.
    pub fn swap_all(&self, input: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let copied = self.swap_into(input, input.len(), &mut out)?;
        out.extend_from_slice(&input[copied..]);
        Some(out)
    }

    /// A streaming swap for one body or message, borrowing this swapper.
    pub fn stream(&self) -> SwapStream<&Swapper> {
        SwapStream::new(self)
    }

    /// A streaming swap that shares ownership of the swapper (a body on its own task).
    pub fn stream_shared(self: &Arc<Self>) -> SwapStream<Arc<Swapper>> {
        SwapStream::new(Arc::clone(self))
    }

    /// The most bytes a [`SwapStream`] holds back between feeds.
    pub fn max_held(&self) -> usize {
        self.max_from.saturating_sub(1)
    }

    /// Appends to `out` the swapped form of `input` up to the end of the last match that
    /// starts before `limit`; returns where in `input` that is, or `None` if no match
    /// starts before `limit`.
    fn swap_into(&self, input: &[u8], limit: usize, out: &mut Vec<u8>) -> Option<usize> {
        let mut copied = None;
        for m in self.ac.find_iter(input) {
            if m.start() >= limit {
                break;
            }
            out.extend_from_slice(&input[copied.unwrap_or(0)..m.start()]);
            out.extend_from_slice(&self.to[m.pattern().as_usize()]);
            copied = Some(m.end());
        }
        copied
    }
}

/// Swapping state for one stream; `S` holds the swapper (`&Swapper` or `Arc<Swapper>`).
pub struct SwapStream<S: Deref<Target = Swapper> = Arc<Swapper>> {
    swapper: S,
    /// Bytes fed but not yet returned: a `from` value may start in them.
    held: Vec<u8>,
    /// Scratch: `held` followed by the chunk being fed.
    buf: Vec<u8>,
}

impl<S: Deref<Target = Swapper>> fmt::Debug for SwapStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwapStream")
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl<S: Deref<Target = Swapper>> SwapStream<S> {
    fn new(swapper: S) -> Self {
        SwapStream {
            swapper,
            held: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Swaps the next chunk; returns the output that can no longer change.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.buf.clear();
        self.buf.extend_from_slice(&self.held);
        self.buf.extend_from_slice(chunk);
        // A match starting at or after `limit` might be cut short, or lose to a longer
        // one, when more data comes; one starting before sees every byte that can matter.
        let limit = self.buf.len().saturating_sub(self.swapper.max_held());
        let mut out = Vec::with_capacity(self.buf.len());
        let copied = self
            .swapper
            .swap_into(&self.buf, limit, &mut out)
            .unwrap_or(0);
        // No match starts in `copied..limit` (those bytes were fully visible), so the
        // search can resume at `limit` as well as at `copied`.
        let emit = copied.max(limit);
        out.extend_from_slice(&self.buf[copied..emit]);
        self.held.clear();
        self.held.extend_from_slice(&self.buf[emit..]);
        out
    }

    /// Ends the stream: the held bytes, swapped.
    pub fn finish(self) -> Vec<u8> {
        let held = &self.held;
        self.swapper.swap_all(held).unwrap_or_else(|| held.to_vec())
    }

    /// Bytes held back now (at most [`Swapper::max_held`]).
    pub fn held(&self) -> usize {
        self.held.len()
    }
}
