//! One detector's search over the carried-over buffer, for one scan of a stream: over the
//! whole buffer (detectors without keywords), anchored at each keyword start, or in
//! windows around keyword starts (see `scanner` for why each is enough).

use std::collections::VecDeque;
use std::ops::Range;

use super::Finding;
use super::blob;
use super::detectors::{CONTEXT, Compiled};

/// Bytes of context kept around a match for look-around assertions (`\b`, `(?m)^`),
/// enough for one UTF-8 character each side.
pub(super) const LOOKAROUND: usize = 8;

/// What one scan of a stream sees: stream bytes `base .. end` (`hay`), and keyword starts
/// known before `needles_next`.
pub(super) struct Pass<'a> {
    pub hay: &'a [u8],
    pub base: u64,
    pub end: u64,
    /// The stream has ended: every match can be reported.
    pub last: bool,
    pub needles_next: u64,
}

/// How far a detector's matches reach, for deciding when they are settled and which
/// bytes to keep.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reach {
    /// Longest match plus the bytes after it that judging it reads: look-around, and
    /// the blob filter's reach for a detector it applies to.
    span: u64,
    /// How far before a keyword a match can start; `None` without keywords.
    lead: Option<u64>,
    /// Bytes before a match that judging it reads: the check's context, or the blob
    /// filter's reach.
    pub behind: u64,
}

impl Reach {
    pub fn of(d: &Compiled) -> Reach {
        let (ahead, behind) = if d.blob_filter {
            (LOOKAROUND + blob::REACH, blob::REACH.max(CONTEXT))
        } else {
            (LOOKAROUND, CONTEXT)
        };
        Reach {
            span: (d.max_len + ahead) as u64,
            lead: (!d.keywords.is_empty()).then_some(d.lead as u64),
            behind: behind as u64,
        }
    }

    /// Exact patterns up to `max_len` bytes, found by the needle pass (known secrets).
    pub fn exact(max_len: usize) -> Reach {
        Reach {
            span: (max_len + LOOKAROUND) as u64,
            lead: Some(0),
            behind: CONTEXT as u64,
        }
    }

    /// The most bytes from the earliest one judging a match of this reach can read to the
    /// end of the data, after a scan: the match starts at or after the settled offset
    /// (`fin`), which lags the end by less than the span, or by the needle pass's lag
    /// (less than `longest_needle`) and the lead.
    pub fn carry(&self, longest_needle: usize) -> usize {
        let lag = match self.lead {
            Some(lead) => self.span.max(longest_needle as u64 + lead),
            None => self.span,
        };
        usize::try_from(lag + self.behind).unwrap_or(usize::MAX)
    }
}

impl Pass<'_> {
    /// Index into `hay` of stream offset `off` (at or after `base`).
    fn idx(&self, off: u64) -> usize {
        usize::try_from(off - self.base).unwrap_or(usize::MAX)
    }

    /// Matches starting before this offset cannot change with more data, and every
    /// keyword start they could hold is known.
    pub fn fin(&self, reach: Reach) -> u64 {
        if self.last {
            return self.end;
        }
        let settle = (self.end + 1).saturating_sub(reach.span);
        match reach.lead {
            // A match may start `lead` bytes before its keyword.
            Some(lead) => settle.min(self.needles_next.saturating_sub(lead)),
            None => settle,
        }
    }

    fn finding(&self, d: &Compiled, m: Range<usize>) -> Finding {
        Finding {
            start: self.base + m.start as u64,
            len: m.len(),
            detector: d.name.clone(),
        }
    }

    /// Searches the whole buffer from `at`; returns where the next search starts.
    pub fn whole(&self, d: &Compiled, mut at: u64, fin: u64, out: &mut Vec<Finding>) -> u64 {
        while at < self.end {
            let Some((m, ok)) = d.find_at(self.hay, self.idx(at), self.hay.len()) else {
                break;
            };
            if self.base + m.start as u64 >= fin {
                break;
            }
            at = self.base + m.end as u64;
            if ok {
                out.push(self.finding(d, m));
            }
        }
        at.max(fin)
    }

    /// Every match starts at a keyword: tries each keyword start before `fin` in turn,
    /// anchored. Returns where the next search starts.
    pub fn anchored(
        &self,
        d: &Compiled,
        hits: &mut VecDeque<u64>,
        mut at: u64,
        fin: u64,
        out: &mut Vec<Finding>,
    ) -> u64 {
        while let Some(&p) = hits.front() {
            if p >= fin {
                break;
            }
            hits.pop_front();
            if p < at {
                continue;
            }
            let s = self.idx(p);
            let limit = self.idx((p + d.max_len as u64).min(self.end));
            at = p + 1;
            if let Some((m, ok)) = d.find_anchored(self.hay, s, limit) {
                at = p + m.len() as u64;
                if ok {
                    out.push(self.finding(d, s + m.start..s + m.end));
                }
            }
        }
        at.max(fin)
    }

    /// Every match holds a keyword, so it starts at most `lead` bytes before one: tries
    /// the regex only on those windows, each cut off where no match starting in it can
    /// reach (plus look-around context). Returns where the next search starts.
    pub fn windows(
        &self,
        d: &Compiled,
        hits: &mut VecDeque<u64>,
        mut at: u64,
        fin: u64,
        out: &mut Vec<Finding>,
    ) -> u64 {
        let lead = d.lead as u64;
        loop {
            while hits.front().is_some_and(|&p| p < at) {
                hits.pop_front();
            }
            let Some(&first) = hits.front() else {
                break;
            };
            let from = first.saturating_sub(lead).max(at);
            if from >= fin {
                break;
            }
            let mut last_start = first;
            for &p in hits.iter().skip(1) {
                if p.saturating_sub(lead) > last_start + 1 {
                    break;
                }
                last_start = p;
            }
            let last_start = last_start.min(fin - 1);
            let limit = (last_start + (d.max_len + LOOKAROUND) as u64).min(self.end);
            match d.find_at(self.hay, self.idx(from), self.idx(limit)) {
                Some((m, ok)) if self.base + m.start as u64 <= last_start => {
                    at = self.base + m.end as u64;
                    if ok {
                        out.push(self.finding(d, m));
                    }
                }
                _ => at = last_start + 1,
            }
        }
        at.max(fin)
    }
}
