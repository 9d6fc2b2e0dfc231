//! The recent past of an audit log, in memory, for `cork audit`: the last lines a sink
//! wrote (bounded in count and bytes) and a broadcast of each new line to whoever
//! follows. A sink given an [`AuditHistory`] feeds it every line it writes.
//!
//! The sink runs on every kernel verdict, so feeding is kept to moving the line the sink
//! already serialized into the ring: nothing is parsed, and a line is cloned for the
//! broadcast only when someone follows. Filtering ([`LineFilter`]) is the reader's cost.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::broadcast;

/// Lines kept by default: about a day of a busy bottle's denials, minutes of its allows.
pub const HISTORY_LINES: usize = 50_000;
/// Bytes kept by default, whichever bound is met first.
pub const HISTORY_BYTES: usize = 32 << 20;
/// Lines a follower may fall behind by before it is told it lost some.
pub const FOLLOW_BACKLOG: usize = 4096;

/// The last lines written, oldest first, and the live feed of new ones.
pub struct AuditHistory {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Bytes>,
}

struct Ring {
    lines: VecDeque<Bytes>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl AuditHistory {
    /// A history keeping at most `max_lines` lines and `max_bytes` bytes.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        AuditHistory {
            ring: Mutex::new(Ring {
                lines: VecDeque::new(),
                bytes: 0,
                max_lines: max_lines.max(1),
                max_bytes,
            }),
            live: broadcast::channel(FOLLOW_BACKLOG).0,
        }
    }

    /// Records one line (a whole JSON object ending in `\n`). Sent to followers under
    /// the ring's lock, so that [`AuditHistory::follow`] sees every line exactly once.
    pub fn push(&self, line: Vec<u8>) {
        let line = Bytes::from(line);
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if self.live.receiver_count() > 0 {
            // No follower has gone: the error (all of them gone since) needs nothing.
            let _ = self.live.send(line.clone());
        }
        ring.bytes += line.len();
        ring.lines.push_back(line);
        while ring.lines.len() > ring.max_lines || ring.bytes > ring.max_bytes {
            match ring.lines.pop_front() {
                Some(old) => ring.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The lines kept, oldest first.
    pub fn snapshot(&self) -> Vec<Bytes> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.lines.iter().cloned().collect()
    }

    /// The lines kept and a receiver of every line pushed after them: none missed,
    /// none twice.
    pub fn follow(&self) -> (Vec<Bytes>, broadcast::Receiver<Bytes>) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.live.subscribe();
        (ring.lines.iter().cloned().collect(), rx)
    }
}

impl Default for AuditHistory {
    fn default() -> Self {
        AuditHistory::new(HISTORY_LINES, HISTORY_BYTES)
    }
}

/// Which lines a reader wants; every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineFilter {
    /// The event's `bottle` is this.
    pub bottle: Option<String>,
    /// The event's `verdict` is this (events without a verdict — lifecycle, loss — never
    /// match a verdict filter).
    pub verdict: Option<String>,
    /// The event's `ts` is at or after this (an event whose `ts` cannot be read does not
    /// match: it cannot be shown to be recent).
    pub since: Option<SystemTime>,
}

/// The fields a filter looks at; the rest of the line is skipped unparsed.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    ts: Option<Cow<'a, str>>,
    #[serde(borrow)]
    bottle: Option<Cow<'a, str>>,
    #[serde(borrow)]
    verdict: Option<Cow<'a, str>>,
}

impl LineFilter {
    /// Whether it lets every line through (then lines need not be parsed).
    pub fn is_empty(&self) -> bool {
        self.bottle.is_none() && self.verdict.is_none() && self.since.is_none()
    }

    /// Whether `line` (one JSON object) passes.
    pub fn matches(&self, line: &[u8]) -> bool {
        if self.is_empty() {
            return true;
        }
        let Ok(head) = serde_json::from_slice::<Head>(line) else {
            return false;
        };
        if let Some(want) = &self.bottle
            && head.bottle.as_deref() != Some(want.as_str())
        {
            return false;
        }
        if let Some(want) = &self.verdict
            && head.verdict.as_deref() != Some(want.as_str())
        {
            return false;
        }
        if let Some(since) = self.since {
            let at = head
                .ts
                .as_deref()
                .and_then(|ts| humantime::parse_rfc3339_weak(ts).ok());
            if at.is_none_or(|at| at < since) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(ts: &str, bottle: &str, verdict: Option<&str>) -> Vec<u8> {
        let mut v = serde_json::json!({"ts": ts, "bottle": bottle, "layer": "kernel",
            "event": "verdict", "dst": "198.51.100.11", "nested": {"verdict": "allow"}});
        if let Some(verdict) = verdict {
            v["verdict"] = verdict.into();
        }
        let mut out = serde_json::to_vec(&v).expect("json");
        out.push(b'\n');
        out
    }

    fn at(ts: &str) -> SystemTime {
        humantime::parse_rfc3339(ts).expect("ts")
    }

    #[test]
    fn the_ring_keeps_the_newest_lines_within_both_bounds() {
        let h = AuditHistory::new(3, 1 << 20);
        for i in 0..5 {
            h.push(format!("{i}\n").into_bytes());
        }
        assert_eq!(h.snapshot(), ["2\n", "3\n", "4\n"]);
        let h = AuditHistory::new(100, 8);
        for i in 0..5 {
            h.push(format!("{i}{i}{i}\n").into_bytes());
        }
        assert_eq!(
            h.snapshot(),
            ["333\n", "444\n"],
            "8 bytes hold two 4-byte lines"
        );
        // A line larger than the whole budget is not kept, and the ring does not spin.
        h.push(vec![b'x'; 64]);
        assert!(h.snapshot().is_empty());
    }

    #[test]
    fn a_follower_sees_each_line_once_history_then_live() {
        let h = AuditHistory::new(10, 1 << 20);
        h.push(b"old\n".to_vec());
        let (past, mut rx) = h.follow();
        h.push(b"new\n".to_vec());
        assert_eq!(past, ["old\n"]);
        assert_eq!(rx.try_recv().expect("live line"), "new\n");
        assert!(rx.try_recv().is_err(), "nothing else");
        drop(rx);
        // Nobody follows: pushing still works.
        h.push(b"later\n".to_vec());
        assert_eq!(h.snapshot(), ["old\n", "new\n", "later\n"]);
    }

    #[test]
    fn filters_look_at_bottle_verdict_and_time() {
        let t0 = "2026-11-30T07:00:00.000000000Z";
        let t1 = "2026-11-30T07:10:00.500000000Z";
        let deny_a = line(t0, "a", Some("deny"));
        let allow_a = line(t1, "a", Some("allow"));
        let deny_b = line(t1, "b", Some("deny"));
        let lifecycle_a = line(t1, "a", None);

        let all = LineFilter::default();
        assert!(all.is_empty());
        assert!(all.matches(b"not even json"), "no filter, no parsing");

        let a = LineFilter {
            bottle: Some("a".into()),
            ..LineFilter::default()
        };
        assert!(a.matches(&deny_a) && a.matches(&allow_a) && a.matches(&lifecycle_a));
        assert!(!a.matches(&deny_b));

        let deny = LineFilter {
            verdict: Some("deny".into()),
            ..LineFilter::default()
        };
        assert!(deny.matches(&deny_a) && deny.matches(&deny_b));
        assert!(
            !deny.matches(&allow_a),
            "a nested verdict is not the event's"
        );
        assert!(!deny.matches(&lifecycle_a), "no verdict, no match");

        let recent = LineFilter {
            since: Some(at("2026-11-30T07:10:00Z")),
            ..LineFilter::default()
        };
        assert!(!recent.matches(&deny_a));
        assert!(recent.matches(&allow_a) && recent.matches(&deny_b));
        let exact = LineFilter {
            since: Some(at(t1)),
            ..LineFilter::default()
        };
        assert!(exact.matches(&allow_a), "since is inclusive");
        let later = LineFilter {
            since: Some(at(t1) + Duration::from_nanos(1)),
            ..LineFilter::default()
        };
        assert!(!later.matches(&allow_a));

        let all_three = LineFilter {
            bottle: Some("a".into()),
            verdict: Some("deny".into()),
            since: Some(at(t0)),
        };
        assert!(all_three.matches(&deny_a));
        assert!(!all_three.matches(&deny_b) && !all_three.matches(&allow_a));
        assert!(
            !all_three.matches(b"{\"bottle\":\"a\",\"verdict\":\"deny\"}"),
            "no ts"
        );
        assert!(!all_three.matches(b"garbage"));
    }

    #[test]
    fn escaped_names_still_match() {
        let f = LineFilter {
            bottle: Some("a\"b".into()),
            ..LineFilter::default()
        };
        assert!(f.matches(br#"{"bottle":"a\"b"}"#));
    }
}
