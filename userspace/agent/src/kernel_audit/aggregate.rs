//! Repeated kernel allows of one flow, summarised: a bottle that connects to the same
//! destination by the thousand (or sends datagram after datagram) would otherwise write
//! one audit line per connect through the sink every bottle of a daemon shares.
//!
//! The contract this keeps: every deny is written, one line per record, never held back;
//! the first allow of a flow in a [`WINDOW`] is written at once, as ever; the allows of
//! the same flow that follow within the window are counted and written as ONE line when
//! the window ends — the last of them, with `count` saying how many it stands for. So
//! `sum(count or 1)` over a flow's allow lines is the number of allows the kernel
//! reported, and kernel losses stay counted by the reader's loss events.
//!
//! A flow is everything a record says except its time and socket cookie: hook, reason,
//! rule, process, cgroup, protocol, both addresses and ports. Different processes, rules
//! or generations are different flows. Windows are measured on the records' own
//! `CLOCK_BOOTTIME` stamps, so what is summarised does not depend on when the reader ran.
//! At most [`MAX_TRACKED`] flows are tracked at once: past that, a new flow's allows are
//! written one by one (never dropped) until windows end.

use std::collections::HashMap;
use std::time::Duration;

use cork_bpf::abi::{cork_event, cork_verdict};

/// How long repeated allows of one flow are counted before their summary is written.
/// One second keeps a summary close to what it summarises (a reader of `cork audit
/// --follow` sees it a second late at most) while a connect loop, which makes thousands
/// a second, is still written as two lines a second.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Flows counted at once. Each costs ~200 bytes; a bottle with more distinct flows than
/// this in one second is written unsummarised, which is the behaviour before summaries.
pub const MAX_TRACKED: usize = 4096;

/// What a record's flow is (everything but its time and socket cookie).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    hook: u8,
    reason: u8,
    rule_id: u32,
    family: u8,
    proto: u8,
    sock_type: u8,
    pid: u32,
    cgroup_id: u64,
    sport: u16,
    dport: u16,
    src: [u8; 16],
    dst: [u8; 16],
}

impl FlowKey {
    fn of(ev: &cork_event) -> Self {
        FlowKey {
            hook: ev.hook,
            reason: ev.reason,
            rule_id: ev.rule_id,
            family: ev.family,
            proto: ev.proto,
            sock_type: ev.sock_type,
            pid: ev.pid,
            cgroup_id: ev.cgroup_id,
            sport: ev.sport,
            dport: ev.dport,
            src: ev.src,
            dst: ev.dst,
        }
    }
}

/// One flow's current window.
struct Window {
    /// Boot-time stamp of the allow written at the window's start.
    started_ns: u64,
    /// Allows counted since, not written.
    held: u64,
    /// The latest of them: what the summary line shows.
    last: cork_event,
}

/// Allows counted in place of lines: write `last` with `count`.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub last: cork_event,
    pub count: u64,
}

/// What to do with one record.
#[derive(Debug)]
pub enum Admit {
    /// Write it now.
    Write,
    /// Write this summary of the flow's previous window, then the record.
    WriteAfter(Summary),
    /// Counted: its flow's summary will stand for it.
    Held,
}

/// The flows of one bottle being counted.
#[derive(Default)]
pub struct Aggregator {
    windows: HashMap<FlowKey, Window>,
}

impl Aggregator {
    /// Decides what happens to `ev` (a deny is always [`Admit::Write`]).
    pub fn admit(&mut self, ev: &cork_event) -> Admit {
        if u32::from(ev.verdict) != cork_verdict::CORK_VERDICT_ALLOW {
            return Admit::Write;
        }
        let key = FlowKey::of(ev);
        let fresh = Window {
            started_ns: ev.ts_boot_ns,
            held: 0,
            last: *ev,
        };
        match self.windows.get_mut(&key) {
            Some(w) if ev.ts_boot_ns < w.started_ns.saturating_add(window_ns()) => {
                w.held += 1;
                w.last = *ev;
                Admit::Held
            }
            Some(w) => {
                let ended = std::mem::replace(w, fresh);
                match ended.summary() {
                    Some(s) => Admit::WriteAfter(s),
                    None => Admit::Write,
                }
            }
            None => {
                if self.windows.len() < MAX_TRACKED {
                    self.windows.insert(key, fresh);
                }
                Admit::Write
            }
        }
    }

    /// Ends every window that started [`WINDOW`] or more before `now_ns` (boot time),
    /// returning the summaries that are due.
    pub fn due(&mut self, now_ns: u64) -> Vec<Summary> {
        let mut out = Vec::new();
        self.windows.retain(|_, w| {
            if now_ns < w.started_ns.saturating_add(window_ns()) {
                return true;
            }
            out.extend(w.summary());
            false
        });
        out
    }

    /// Ends every window now (the reader is stopping).
    pub fn finish(&mut self) -> Vec<Summary> {
        self.windows
            .drain()
            .filter_map(|(_, w)| w.summary())
            .collect()
    }
}

impl Window {
    fn summary(&self) -> Option<Summary> {
        (self.held > 0).then_some(Summary {
            last: self.last,
            count: self.held,
        })
    }
}

fn window_ns() -> u64 {
    WINDOW.as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use cork_bpf::abi::cork_hook;

    const MS: u64 = 1_000_000;

    fn connect(verdict: u32, pid: u32, dst_last: u8, ts_ms: u64) -> cork_event {
        let mut ev = cork_event {
            ts_boot_ns: ts_ms * MS,
            hook: cork_hook::CORK_HOOK_CONNECT4 as u8,
            verdict: verdict as u8,
            family: libc::AF_INET as u8,
            proto: 6,
            dport: 443,
            pid,
            rule_id: 0,
            ..Default::default()
        };
        ev.dst[..4].copy_from_slice(&[198, 51, 100, dst_last]);
        ev
    }

    fn allow(pid: u32, dst_last: u8, ts_ms: u64) -> cork_event {
        connect(cork_verdict::CORK_VERDICT_ALLOW, pid, dst_last, ts_ms)
    }

    #[test]
    fn denies_are_never_held() {
        let mut agg = Aggregator::default();
        for ts in 0..100 {
            let ev = connect(cork_verdict::CORK_VERDICT_DENY, 7, 10, ts);
            assert!(matches!(agg.admit(&ev), Admit::Write));
        }
        assert!(agg.finish().is_empty());
    }

    #[test]
    fn a_burst_is_its_first_line_and_one_summary() {
        let mut agg = Aggregator::default();
        assert!(matches!(agg.admit(&allow(7, 10, 0)), Admit::Write));
        for ts in 1..1000 {
            assert!(matches!(agg.admit(&allow(7, 10, ts)), Admit::Held));
        }
        // Not due before the window ends...
        assert!(agg.due(999 * MS).is_empty());
        // ...then one summary standing for the 999 held, showing the last of them.
        let due = agg.due(1000 * MS);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 999);
        assert_eq!(due[0].last.ts_boot_ns, 999 * MS);
        // The flow starts over: its next allow is written at once.
        assert!(matches!(agg.admit(&allow(7, 10, 1500)), Admit::Write));
    }

    #[test]
    fn an_allow_after_the_window_writes_the_summary_first() {
        let mut agg = Aggregator::default();
        assert!(matches!(agg.admit(&allow(7, 10, 0)), Admit::Write));
        assert!(matches!(agg.admit(&allow(7, 10, 10)), Admit::Held));
        assert!(matches!(agg.admit(&allow(7, 10, 20)), Admit::Held));
        match agg.admit(&allow(7, 10, 1000)) {
            Admit::WriteAfter(s) => {
                assert_eq!(s.count, 2);
                assert_eq!(s.last.ts_boot_ns, 20 * MS);
            }
            other => panic!("expected a summary first, got {other:?}"),
        }
        // A window with nothing held ends without a line.
        assert!(matches!(agg.admit(&allow(7, 10, 2500)), Admit::Write));
        assert!(agg.finish().is_empty());
    }

    #[test]
    fn flows_are_counted_apart() {
        let mut agg = Aggregator::default();
        // Another process, destination, rule or verdict is another flow: written at once.
        assert!(matches!(agg.admit(&allow(7, 10, 0)), Admit::Write));
        assert!(matches!(agg.admit(&allow(8, 10, 1)), Admit::Write));
        assert!(matches!(agg.admit(&allow(7, 11, 2)), Admit::Write));
        let mut other_rule = allow(7, 10, 3);
        other_rule.rule_id = 1;
        assert!(matches!(agg.admit(&other_rule), Admit::Write));
        // The socket cookie is not part of a flow.
        let mut other_socket = allow(7, 10, 4);
        other_socket.sock_cookie = 99;
        assert!(matches!(agg.admit(&other_socket), Admit::Held));
        let held: Vec<Summary> = agg.finish();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].count, 1);
        assert_eq!(held[0].last.sock_cookie, 99);
    }

    #[test]
    fn past_the_tracking_bound_allows_are_written_one_by_one() {
        let mut agg = Aggregator::default();
        for pid in 0..MAX_TRACKED as u32 {
            assert!(matches!(agg.admit(&allow(pid, 10, 0)), Admit::Write));
        }
        let untracked = MAX_TRACKED as u32;
        for ts in 0..3 {
            assert!(matches!(agg.admit(&allow(untracked, 10, ts)), Admit::Write));
        }
        // Every allow is a line or counted in a summary: nothing is lost.
        assert!(agg.finish().is_empty());
    }
}
