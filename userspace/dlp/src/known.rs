//! Known secrets: every real credential value cork holds, in each encoding an agent could
//! pass it through, as needles for the scanner's one automaton (see `needles`), and the
//! few anchors the root search finds them by: a few dozen patterns per secret would
//! otherwise fill the SIMD search's groups (past 64, the automaton alone ran at a
//! fifth of the speed).
//!
//! Per secret: the value verbatim; standard base64 and base64url at each of the three
//! alignments it can have inside a larger base64 stream (only the characters fully
//! determined by the value's own bits); lower- and upper-case hex; URL-encoding (upper and
//! lower hex escapes, and the form variant with `+` for space); and every raw fragment of
//! `fragment_min_len` bytes, which the scanner extends to the longest run of the value.

use std::collections::HashMap;

use super::escapes;
use super::{DlpError, KnownSecret, MAX_KNOWN_SECRET_LEN, MIN_KNOWN_SECRET_LEN};

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// What an automaton pattern stands for.
#[derive(Debug, Clone, Copy)]
struct Pattern {
    secret: usize,
    /// For a raw fragment: its offset in the value, so a match can be extended.
    fragment_at: Option<usize>,
}

/// The known-secret patterns. Matching them is leftmost-longest over all patterns, with a
/// fragment extended to the longest run of its value.
#[derive(Debug)]
pub(super) struct KnownSet {
    /// The needles, numbered as `patterns`.
    needles: Vec<Vec<u8>>,
    patterns: Vec<Pattern>,
    /// `known-secret:<name>` per secret.
    names: Vec<String>,
    values: Vec<Vec<u8>>,
    fragment_min_len: usize,
    /// Longest possible finding, in bytes.
    pub max_len: usize,
}

/// Bytes every occurrence of some known-secret patterns holds, so that a search for
/// these few bytes finds the patterns: they start `back` bytes before the bytes, for
/// some `back` in `lo..=hi`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Anchor {
    pub bytes: Vec<u8>,
    pub lo: usize,
    pub hi: usize,
}

/// Bytes per anchor (the root search's longest roots).
const ANCHOR: usize = 4;

impl KnownSet {
    /// `None` when there are no secrets.
    pub fn new(
        secrets: &[KnownSecret],
        fragment_min_len: usize,
    ) -> Result<Option<KnownSet>, DlpError> {
        if secrets.is_empty() {
            return Ok(None);
        }
        let mut index: HashMap<Vec<u8>, Pattern> = HashMap::new();
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut add = |bytes: Vec<u8>, p: Pattern| {
            if !bytes.is_empty() && !index.contains_key(&bytes) {
                index.insert(bytes.clone(), p);
                order.push(bytes);
            }
        };
        for (i, s) in secrets.iter().enumerate() {
            let len = s.value.len();
            if len < MIN_KNOWN_SECRET_LEN {
                return Err(DlpError::KnownSecretTooShort {
                    name: s.name.clone(),
                    len,
                    min: MIN_KNOWN_SECRET_LEN,
                });
            }
            if len > MAX_KNOWN_SECRET_LEN {
                return Err(DlpError::KnownSecretTooLong {
                    name: s.name.clone(),
                    len,
                    max: MAX_KNOWN_SECRET_LEN,
                });
            }
            let whole = Pattern {
                secret: i,
                fragment_at: None,
            };
            for e in encodings(&s.value) {
                add(e, whole);
            }
            if len > fragment_min_len {
                for (at, w) in s.value.windows(fragment_min_len).enumerate() {
                    add(
                        w.to_vec(),
                        Pattern {
                            secret: i,
                            fragment_at: Some(at),
                        },
                    );
                }
            }
        }
        let max_len = order.iter().map(Vec::len).max().unwrap_or(0);
        let patterns = order.iter().map(|b| index[b]).collect();
        Ok(Some(KnownSet {
            needles: order,
            patterns,
            names: secrets
                .iter()
                .map(|s| format!("known-secret:{}", s.name))
                .collect(),
            values: secrets.iter().map(|s| s.value.clone()).collect(),
            fragment_min_len,
            max_len,
        }))
    }

    /// Anchors for every pattern: a whole-value encoding by its first bytes; fragments by
    /// blocks of their value `fragment_min_len - 3` bytes apart, so that every fragment
    /// (`fragment_min_len` bytes from any offset) holds a whole block. A value of 40
    /// bytes then needs 4 anchors for its 29 fragments.
    pub fn anchors(&self) -> Vec<Anchor> {
        let mut out: Vec<Anchor> = self
            .needles
            .iter()
            .zip(&self.patterns)
            .filter(|(_, p)| p.fragment_at.is_none())
            .map(|(n, _)| Anchor {
                bytes: n[..n.len().min(ANCHOR)].to_vec(),
                lo: 0,
                hi: 0,
            })
            .collect();
        let f = self.fragment_min_len;
        // Any `f - 3` consecutive offsets hold a multiple of the step: the fragment at
        // `s` holds the block at that multiple `o`, as `s <= o <= s + f - 4`.
        debug_assert!(f >= ANCHOR, "fragments shorter than an anchor");
        let step = f.saturating_sub(ANCHOR - 1).max(1);
        for v in self.values.iter().filter(|v| v.len() > f) {
            for o in (0..=v.len() - ANCHOR).step_by(step) {
                // Fragments `s` holding the block: `o + 4 - f <= s <= o`, `s <= len - f`.
                out.push(Anchor {
                    bytes: v[o..o + ANCHOR].to_vec(),
                    lo: o.saturating_sub(v.len() - f),
                    hi: o.min(f.saturating_sub(ANCHOR)),
                });
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Every pattern, numbered from 0.
    pub fn needles(&self) -> impl Iterator<Item = &[u8]> {
        self.needles.iter().map(Vec::as_slice)
    }

    /// The finding for pattern `n` found at `start` in `hay`: its range (a fragment
    /// extended to the longest run of the value) and the detector name.
    pub fn matched(&self, hay: &[u8], start: usize, n: usize) -> (std::ops::Range<usize>, &str) {
        let p = self.patterns[n];
        let mut end = start + self.needles[n].len();
        if let Some(off) = p.fragment_at {
            let value = &self.values[p.secret];
            let mut next = off + self.needles[n].len();
            while next < value.len() && end < hay.len() && hay[end] == value[next] {
                next += 1;
                end += 1;
            }
        }
        (start..end, &self.names[p.secret])
    }
}

/// Every whole-value encoding of `v` (duplicates are fine; the caller drops them).
fn encodings(v: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![v.to_vec()];
    // The needle pass searches the escape view (see `escapes`): a value holding `\n`,
    // `\r` or `\t` sent as is shows there with the control byte.
    let mut viewed = v.to_vec();
    escapes::apply(&mut viewed, false);
    out.push(viewed);
    for alphabet in [B64_STD, B64_URL] {
        for align in 0..3 {
            out.push(base64_core(v, align, alphabet));
        }
    }
    out.push(hex(v, b"0123456789abcdef"));
    out.push(hex(v, b"0123456789ABCDEF"));
    out.push(url_encode(v, b"0123456789ABCDEF", false));
    out.push(url_encode(v, b"0123456789abcdef", false));
    out.push(url_encode(v, b"0123456789ABCDEF", true));
    out
}

/// The base64 characters that depend only on `v`'s bits when `v` starts `align` bytes
/// into a 3-byte group of a larger stream.
pub(super) fn base64_core(v: &[u8], align: usize, alphabet: &[u8; 64]) -> Vec<u8> {
    let first_bit = 8 * align;
    let end_bit = 8 * (align + v.len());
    let bit = |i: usize| -> u8 {
        if i < first_bit || i >= end_bit {
            return 0;
        }
        let b = i - first_bit;
        (v[b / 8] >> (7 - b % 8)) & 1
    };
    let mut out = Vec::with_capacity(v.len() * 4 / 3 + 1);
    // Character j covers bits [6j, 6j + 6); keep those entirely inside the value.
    let mut j = first_bit.div_ceil(6);
    while 6 * j + 6 <= end_bit {
        let six = (0..6).fold(0u8, |acc, k| (acc << 1) | bit(6 * j + k));
        out.push(alphabet[usize::from(six)]);
        j += 1;
    }
    out
}

/// Plain padded base64 of `v` (test helper and reference for [`base64_core`]).
#[cfg(test)]
pub(super) fn base64(v: &[u8], alphabet: &[u8; 64], pad: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for c in v.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        let chars = c.len() + 1;
        for k in 0..4 {
            if k < chars {
                out.push(alphabet[((n >> (18 - 6 * k)) & 63) as usize]);
            } else if pad {
                out.push(b'=');
            }
        }
    }
    out
}

#[cfg(test)]
pub(super) const ALPHABETS: [&[u8; 64]; 2] = [B64_STD, B64_URL];

pub(super) fn hex(v: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    v.iter()
        .flat_map(|&b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]])
        .collect()
}

/// Percent-encoding of everything but RFC 3986 unreserved characters.
pub(super) fn url_encode(v: &[u8], digits: &[u8; 16], plus_for_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 3);
    for &b in v {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            b' ' if plus_for_space => out.push(b'+'),
            _ => out.extend([
                b'%',
                digits[usize::from(b >> 4)],
                digits[usize::from(b & 15)],
            ]),
        }
    }
    out
}
