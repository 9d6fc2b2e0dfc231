//! The scanner (shared, immutable) and per-stream scanning state.
//!
//! A stream keeps a carry-over buffer: the bytes from a little before the earliest offset
//! where an unreported match could still start, up to the end of the data fed. A match is
//! reported once at least `max_len + LOOKAROUND` bytes of its detector follow its start:
//! from then on no later byte can change it (matches are bounded, and `\b` looks one
//! character ahead). A detector the blob filter applies to (see `blob`) waits for
//! `blob::REACH` bytes more, and keeps as many before its matches, so the filter sees the
//! same bytes around a match as in one buffer. So the carry-over never exceeds
//! [`Scanner::max_carry`], and the findings do not depend on how the stream was split.
//!
//! Regexes do not run over the whole buffer. The needle pass (see `needles`) reads each
//! byte once and records where each detector's keywords and each known-secret pattern
//! start; known-secret findings come straight from it. As every match holds a keyword, a
//! detector's regex runs only at those starts (anchored, when its matches begin with the
//! keyword) or in windows reaching back `lead` bytes from them (see `search`). A match is
//! reported only once every keyword start it could depend on has been seen, which the
//! needle pass lags behind the data by less than the longest needle. Detectors without
//! keywords search the whole buffer.
//!
//! A scan only visits the detectors with keyword starts to try (a few of hundreds): the
//! others just move their settled offset on, in one pass over a compact array.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::Arc;

use super::detectors::{CONTEXT, Compiled, Family, Kind, Severity, builtins};
use super::escapes;
use super::known::KnownSet;
use super::needles::{Needles, Scratch};
use super::search::{LOOKAROUND, Pass, Reach};
use super::teddy::Kernel;
use super::{Config, DlpError, Finding, MIN_KNOWN_SECRET_LEN};

/// Built from a [`Config`] once per policy; cheap to share between streams (`Arc`).
/// The built-in detectors' analysis is done once per process and shared by every
/// scanner (see [`builtins`]); only the manifest's detectors and the known secrets are
/// the scanner's own.
#[derive(Debug)]
pub struct Scanner {
    pub(super) detectors: Vec<Arc<Compiled>>,
    /// Per detector, how far its matches reach (kept apart: every scan reads them all).
    reach: Vec<Reach>,
    /// Detectors without keywords: they search every scan.
    always: Vec<usize>,
    /// Every detector's keywords and every known-secret pattern.
    needles: Option<Needles>,
    known: Option<KnownSet>,
    /// How far known-secret findings reach.
    known_reach: Reach,
    max_carry: usize,
}

impl Scanner {
    pub fn new(config: &Config) -> Result<Scanner, DlpError> {
        Scanner::with_kernel(config, Kernel::best())
    }

    /// A scanner that searches keyword roots with `kernel`, or with aho-corasick when
    /// `None` or the CPU cannot run it (tests compare them).
    pub(super) fn with_kernel(
        config: &Config,
        kernel: Option<Kernel>,
    ) -> Result<Scanner, DlpError> {
        if config.fragment_min_len < MIN_KNOWN_SECRET_LEN {
            return Err(DlpError::FragmentTooShort {
                len: config.fragment_min_len,
                min: MIN_KNOWN_SECRET_LEN,
            });
        }
        let mut detectors: Vec<Arc<Compiled>> = if config.builtin {
            builtins()?.to_vec()
        } else {
            Vec::new()
        };
        detectors.reserve(config.custom.len());
        for d in &config.custom {
            if detectors.iter().any(|c| c.name == d.name) {
                return Err(DlpError::DuplicateDetector {
                    detector: d.name.clone(),
                });
            }
            detectors.push(Arc::new(Compiled::new(d)?));
        }
        let known = KnownSet::new(&config.known_secrets, config.fragment_min_len)?;
        Scanner::assemble(detectors, known, kernel)
    }

    /// A scanner with only the built-ins named, no known secrets (tests of one detector's
    /// bounds, without the others' longer carry-over to hide a shortfall).
    #[cfg(test)]
    pub(super) fn builtins_named(names: &[&str]) -> Result<Scanner, DlpError> {
        let detectors = builtins()?
            .iter()
            .filter(|d| names.contains(&d.name.as_str()))
            .cloned()
            .collect();
        Scanner::assemble(detectors, None, Kernel::best())
    }

    fn assemble(
        detectors: Vec<Arc<Compiled>>,
        known: Option<KnownSet>,
        kernel: Option<Kernel>,
    ) -> Result<Scanner, DlpError> {
        let needles = Needles::new(&detectors, known.as_ref(), kernel)?;

        let longest = detectors
            .iter()
            .map(|d| d.max_len)
            .chain(known.as_ref().map(|k| k.max_len))
            .max()
            .unwrap_or(0);
        // Keyword starts are known up to the longest needle before the end of the data,
        // and a match may start up to its detector's `lead` before its keyword.
        let keyword_lag = needles.as_ref().map_or(0, |k| {
            k.max_len + detectors.iter().map(|d| d.lead).max().unwrap_or(0)
        });
        let reach: Vec<Reach> = detectors.iter().map(|d| Reach::of(d)).collect();
        // The blob filter's detectors keep more before their matches and settle later.
        let blob_carry = reach
            .iter()
            .zip(&detectors)
            .filter(|(_, d)| d.blob_filter)
            .map(|(r, _)| r.carry(needles.as_ref().map_or(0, |k| k.max_len)))
            .max()
            .unwrap_or(0);
        Ok(Scanner {
            reach,
            always: (0..detectors.len())
                .filter(|&i| detectors[i].keywords.is_empty())
                .collect(),
            known_reach: Reach::exact(known.as_ref().map_or(0, |k| k.max_len)),
            detectors,
            needles,
            known,
            max_carry: ((longest + LOOKAROUND).max(keyword_lag) + CONTEXT).max(blob_carry),
        })
    }

    /// A fresh per-stream state borrowing this scanner.
    pub fn stream(&self) -> StreamScan<&Scanner> {
        StreamScan::new(self)
    }

    /// A fresh per-stream state that shares ownership of the scanner: for streams that
    /// outlive any borrow (a proxied body on its own task). The scanner lives as long as
    /// its last stream, and no longer.
    pub fn stream_shared(self: &Arc<Self>) -> StreamScan<Arc<Scanner>> {
        StreamScan::new(Arc::clone(self))
    }
}

impl<S: Deref<Target = Scanner>> StreamScan<S> {
    fn new(scanner: S) -> Self {
        let detectors = scanner.detectors.len();
        StreamScan {
            scanner,
            buf: Vec::new(),
            base: 0,
            next: vec![0; detectors],
            known_next: 0,
            // Made on the first keyword hit: most streams (a request head, a small body)
            // have none, and one deque per detector is a ~10 KiB allocation per stream.
            hits: Vec::new(),
            pending: Vec::new(),
            known_hits: VecDeque::new(),
            needles_next: 0,
            scratch: Scratch::default(),
            escape_open: false,
        }
    }
}

impl Scanner {
    /// The most bytes a [`StreamScan`] carries over between chunks.
    pub fn max_carry(&self) -> usize {
        self.max_carry
    }

    /// Names of the regex detectors, in order (known secrets not included).
    pub fn detector_names(&self) -> impl Iterator<Item = &str> {
        self.detectors.iter().map(|d| d.name.as_str())
    }

    /// What the scanner knows about the detector a finding names; `None` for known
    /// secrets (`known-secret:<name>`) and unknown names.
    pub fn detector(&self, name: &str) -> Option<DetectorInfo<'_>> {
        self.detectors
            .iter()
            .find(|d| d.name == name)
            .map(|d| DetectorInfo {
                name: &d.name,
                title: &d.title,
                family: d.family,
                kind: d.kind,
                severity: d.severity,
            })
    }

    /// The severity of the detector a finding names: a known secret is always
    /// [`Severity::Critical`] (it is a real credential cork holds).
    pub fn severity(&self, detector: &str) -> Severity {
        self.detector(detector)
            .map_or(Severity::Critical, |d| d.severity)
    }
}

/// A detector's description, as [`Scanner::detector`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorInfo<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub family: Family,
    pub kind: Kind,
    pub severity: Severity,
}

/// Scanning state for one stream. Memory: at most [`Scanner::max_carry`] bytes carried
/// over (and one keyword offset per byte of it), plus twice the chunk being fed. `S` is how
/// the stream holds its scanner: borrowed (`&Scanner`) or shared (`Arc<Scanner>`).
#[derive(Debug)]
pub struct StreamScan<S: Deref<Target = Scanner> = Arc<Scanner>> {
    scanner: S,
    /// Stream bytes `base .. base + buf.len()`.
    buf: Vec<u8>,
    base: u64,
    /// Per detector: the stream offset where its next search starts.
    next: Vec<u64>,
    known_next: u64,
    /// Per detector: stream offsets where one of its keywords starts, in order; those
    /// before the detector's `next` are dropped as the search passes them. Empty until
    /// the stream's first keyword hit.
    hits: Vec<VecDeque<u64>>,
    /// The detectors whose `hits` are not empty, once each.
    pending: Vec<usize>,
    /// Stream offsets where a known-secret pattern starts, with the longest pattern
    /// there; those before `known_next` are dropped as the search passes them.
    known_hits: VecDeque<(u64, usize)>,
    /// Needles starting before this offset are in `hits` and `known_hits`.
    needles_next: u64,
    /// Scratch for the needle pass (about one chunk), reused between feeds.
    scratch: Scratch,
    /// The data fed so far ends in an unescaped backslash: the next byte is its letter.
    escape_open: bool,
}

impl<S: Deref<Target = Scanner>> StreamScan<S> {
    /// Scans the next chunk of the stream; returns the findings that became certain,
    /// sorted by offset. Each match is reported once, by this call or a later one.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Finding> {
        self.push(chunk);
        let out = self.scan(false);
        self.trim();
        out
    }

    /// Ends the stream: reports every match not yet reported.
    pub fn finish(mut self) -> Vec<Finding> {
        self.scan(true)
    }

    /// A whole stream in one call: the findings of `feed(bytes)` then `finish()` (sorted),
    /// with one pass instead of two (an HTTP request head, scanned per request, is short
    /// enough that the second pass over every detector was most of its cost).
    pub fn scan_whole(mut self, bytes: &[u8]) -> Vec<Finding> {
        self.push(bytes);
        self.scan(true)
    }

    /// Appends `chunk` to the carry-over in the escape view (see `escapes`): the buffer
    /// holds what the detectors judge, the same length as the stream, so findings'
    /// offsets still point at the original bytes.
    fn push(&mut self, chunk: &[u8]) {
        let from = self.buf.len();
        self.buf.extend_from_slice(chunk);
        self.escape_open = escapes::apply(&mut self.buf[from..], self.escape_open);
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
        let sc: &Scanner = &self.scanner;
        let end = self.position();
        let base = self.base;
        let idx = |off: u64| usize::try_from(off - base).unwrap_or(usize::MAX);
        let mut out = Vec::new();

        if let Some(needles) = &sc.needles {
            // Needles starting this close to the end may still be cut short.
            let until = if last {
                end
            } else {
                end.saturating_sub(needles.max_len as u64 - 1)
            };
            let from = self.needles_next.max(base);
            if until > from {
                let known_hits = &mut self.known_hits;
                needles.scan(
                    &self.buf,
                    idx(from),
                    idx(until),
                    &mut self.scratch,
                    |p, n| known_hits.push_back((base + p as u64, n)),
                );
                // Handed out after the pass, in one go: the per-detector lists stay in
                // cache.
                for &(at, e) in self.scratch.found() {
                    let p = base + at as u64;
                    for &(d, keyword) in needles.detectors(e) {
                        // A hit its detector's DFA rejects costs no more.
                        if sc.detectors[d].rejects(&self.buf, at, keyword) {
                            continue;
                        }
                        if self.hits.is_empty() {
                            self.hits.resize_with(sc.detectors.len(), VecDeque::new);
                        }
                        if self.hits[d].is_empty() {
                            self.pending.push(d);
                        }
                        insert_hit(&mut self.hits[d], p);
                    }
                }
                self.needles_next = until;
            }
        }

        let pass = Pass {
            hay: &self.buf,
            base,
            end,
            last,
            needles_next: self.needles_next,
        };
        for &i in &sc.always {
            let fin = pass.fin(sc.reach[i]);
            self.next[i] = pass.whole(&sc.detectors[i], self.next[i], fin, &mut out);
        }
        // Only detectors with keyword starts to try have searching to do.
        let (hits, next) = (&mut self.hits, &mut self.next);
        self.pending.retain(|&i| {
            let (d, hits) = (&sc.detectors[i], &mut hits[i]);
            let fin = pass.fin(sc.reach[i]);
            next[i] = if d.has_anchored() {
                pass.anchored(d, hits, next[i], fin, &mut out)
            } else {
                pass.windows(d, hits, next[i], fin, &mut out)
            };
            !hits.is_empty()
        });
        // For the others, every match starting before `fin` has been reported.
        for (next, &reach) in self.next.iter_mut().zip(&sc.reach) {
            *next = (*next).max(pass.fin(reach));
        }

        if let Some(k) = &sc.known {
            // Leftmost-longest, non-overlapping: the next pattern start at or after the
            // end of the previous finding, once the needle pass has covered it.
            let fin = pass.fin(sc.known_reach);
            let mut at = self.known_next;
            while let Some(&(p, n)) = self.known_hits.front() {
                if p >= fin {
                    break;
                }
                self.known_hits.pop_front();
                if p < at {
                    continue;
                }
                let (m, name) = k.matched(pass.hay, idx(p), n);
                at = base + m.end as u64;
                out.push(Finding {
                    start: p,
                    len: m.len(),
                    detector: name.to_string(),
                });
            }
            self.known_next = at.max(fin);
        }
        out.sort();
        out
    }

    /// Drops bytes no future search can need.
    fn trim(&mut self) {
        // Judging a match reads up to `behind` bytes before it: CONTEXT for the checks
        // (more than look-around needs), the blob filter's reach for its detectors.
        let sc: &Scanner = &self.scanner;
        let keep_from = self
            .next
            .iter()
            .zip(&sc.reach)
            .map(|(&next, r)| next.saturating_sub(r.behind))
            .chain(
                sc.known
                    .as_ref()
                    .map(|_| self.known_next.saturating_sub(sc.known_reach.behind)),
            )
            .min()
            .unwrap_or_else(|| self.position().saturating_sub(CONTEXT as u64));
        if keep_from > self.base {
            let n = usize::try_from(keep_from - self.base).unwrap_or(usize::MAX);
            self.buf.drain(..n.min(self.buf.len()));
            self.base += n as u64;
        }
    }
}

/// Adds keyword start `p` to a detector's `hits`, keeping them in order and once each:
/// the needle pass reports positions in order but for a few bytes (it reports a block of
/// data root group by root group), and two keywords of one detector may start at one
/// position.
fn insert_hit(hits: &mut VecDeque<u64>, p: u64) {
    let mut at = hits.len();
    while at > 0 && hits[at - 1] > p {
        at -= 1;
    }
    if at == 0 || hits[at - 1] != p {
        hits.insert(at, p);
    }
}
