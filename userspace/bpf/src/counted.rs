//! The allowed connects the kernel counted instead of recording (`cork_allows`, see
//! `cork_allow_counted` in ebpf/sock_addr.bpf.c): a connect that repeats, within a
//! second, one the programs already recorded only adds one to its flow's `counted`. The
//! event reader sweeps the map on its loss-check tick and hands each flow's new count to
//! the handler as one summary — the flow's last record, with `count` — so every allow is
//! still a line of the audit log or counted in one. A busy flow's summary is written when
//! its next record arrives (a connect after its window ended), just before it; a flow
//! that went quiet is summed up by the reader's tick once its window is over. So a
//! connect loop is two lines a second: a record and a summary.
//!
//! Why this is exact: a slot's `counted` only grows while it is LIVE for one flow, and
//! only the programs write it; the reader remembers per slot what it has reported and
//! reports the difference. A slot is freed (by this reader alone, so it forgets what it
//! reported there in the same step) only once its window ended [`IDLE`] ago with nothing
//! left to report: a program counts only while its clock is inside the window it read in
//! the slot, and runs for microseconds, so no count can land in a freed slot. A reader
//! that starts on slots that already have counts (the daemon taking a bottle back) takes
//! them as reported by the one before it. (allow_slots.rs: the mapping and the protocol.)

use std::collections::HashMap as StdHashMap;
use std::time::Duration;

use aya::maps::Map;

use crate::MapError;
use crate::abi::{
    CORK_ALLOW_IDLE_NS, cork_allow_key, cork_event, cork_hook, cork_reason, cork_verdict,
};
use crate::allow_slots::{AllowSlots, Key, Live};

const ALLOWS: &str = crate::abi::map_names::CORK_ALLOWS;
/// How long after its window ended a slot with nothing to report is freed.
pub const IDLE: Duration = Duration::from_nanos(CORK_ALLOW_IDLE_NS);

/// A bottle's counted connects and what of them was reported.
pub struct CountedAllows {
    slots: AllowSlots,
    /// Per slot: its `counted` when last reported.
    reported: StdHashMap<usize, u64>,
    /// Per flow and rule: its latest record, which a summary repeats.
    last: StdHashMap<(Key, u32), cork_event>,
}

impl CountedAllows {
    /// Takes `cork_allows` out of the bottle's maps and maps it (None: this bottle's
    /// programs count nothing). What it already counts is taken as reported.
    pub fn take(maps: &mut crate::MapSet) -> Result<Option<Self>, MapError> {
        let Some(map) = maps.take_map(ALLOWS) else {
            return Ok(None);
        };
        let Map::Array(data) = map else {
            return Err(MapError::Mismatch {
                map: ALLOWS,
                detail: "not an array (a program set of another cork build?)".into(),
            });
        };
        Ok(Some(Self::over(AllowSlots::map(data)?)))
    }

    /// The reader of `slots`; what they already count is taken as reported.
    fn over(slots: AllowSlots) -> Self {
        let reported = slots
            .all_live()
            .into_iter()
            .map(|(at, l)| (at, l.counted))
            .collect();
        CountedAllows {
            slots,
            reported,
            last: StdHashMap::new(),
        }
    }

    /// Notes a record the reader read. A recorded allow of a countable flow opens the
    /// flow's next window: what the programs counted in the window before is returned as
    /// its summary (the previous record, with the count), to be written before this
    /// record — and this record is what the next summary will show.
    pub fn note(&mut self, ev: &cork_event) -> Option<(cork_event, u64)> {
        let flow = (key_of(ev)?, ev.rule_id);
        if let std::collections::hash_map::Entry::Vacant(first) = self.last.entry(flow) {
            // The flow's first record: what is counted so far is its own window's.
            first.insert(*ev);
            return None;
        }
        // A flow races into two slots at most (two CPUs claiming at once): one summary.
        let mut total = 0;
        for (at, live) in self.slots.find(&flow.0, flow.1) {
            total += self.take_unreported(at, &live);
        }
        let previous = self.last.insert(flow, *ev);
        (total > 0).then(|| (previous.unwrap_or(*ev), total))
    }

    /// The summaries of flows whose window is over (all of them with `all`, when the
    /// bottle has ended), each its last record (or, if that record was lost, one made
    /// from the flow itself, stamped `now_boot_ns`) and how many connects it stands for.
    /// A busy flow's summary is written by [`CountedAllows::note`] when its next window
    /// opens; this writes the summary of a flow that went quiet. Frees idle slots.
    pub fn sweep(&mut self, now_boot_ns: u64, all: bool) -> Vec<(cork_event, u64)> {
        let idle_ns = IDLE.as_nanos() as u64;
        let live = self.slots.all_live();
        let slots: std::collections::HashSet<usize> = live.iter().map(|(at, _)| *at).collect();
        self.reported.retain(|at, _| slots.contains(at));
        let mut freed = std::collections::HashSet::new();
        let mut due: StdHashMap<(Key, u32), u64> = StdHashMap::new();
        for (at, l) in &live {
            if all || l.window_end_ns <= now_boot_ns {
                let n = self.take_unreported(*at, l);
                if n > 0 {
                    *due.entry((l.key, l.rule_id)).or_default() += n;
                }
            }
            let reported = self.reported.get(at).copied().unwrap_or(0);
            if l.counted <= reported
                && l.window_end_ns.saturating_add(idle_ns) < now_boot_ns
                && self.slots.free(*at)
            {
                self.reported.remove(at);
                freed.insert(*at);
            }
        }
        let out = due
            .into_iter()
            .map(|(flow, n)| {
                let ev = self
                    .last
                    .get(&flow)
                    .copied()
                    .unwrap_or_else(|| event_of(&flow.0, flow.1, now_boot_ns));
                (ev, n)
            })
            .collect();
        // Only flows the kernel counts are remembered: a record of a flow it has no room
        // for (both its slots taken), or whose slots were freed, would otherwise stay in
        // `last` for the bottle's life.
        let counting: std::collections::HashSet<(Key, u32)> = live
            .iter()
            .filter(|(at, _)| !freed.contains(at))
            .map(|(_, l)| (l.key, l.rule_id))
            .collect();
        self.last.retain(|k, _| counting.contains(k));
        out
    }

    /// The slot's count not yet reported, now taken as reported.
    fn take_unreported(&mut self, at: usize, live: &Live) -> u64 {
        let reported = self.reported.get(&at).copied().unwrap_or(0);
        if live.counted <= reported {
            return 0;
        }
        self.reported.insert(at, live.counted);
        live.counted - reported
    }
}

/// The `struct cork_allow_key` of a record the programs would count the repeats of: an
/// allowed connect decided by an allow rule (the flow `cork_allow_counted` keys by; its
/// rule is the slot's, and the record's `rule_id`).
pub fn key_of(ev: &cork_event) -> Option<Key> {
    let connect = ev.hook == cork_hook::CORK_HOOK_CONNECT4 as u8
        || ev.hook == cork_hook::CORK_HOOK_CONNECT6 as u8;
    if !connect
        || u32::from(ev.verdict) != cork_verdict::CORK_VERDICT_ALLOW
        || u32::from(ev.reason) != cork_reason::CORK_REASON_ALLOW_RULE
    {
        return None;
    }
    Some(key_bytes(&cork_allow_key {
        pid: ev.pid,
        hook: ev.hook,
        family: ev.family,
        proto: ev.proto,
        sock_type: ev.sock_type,
        dst: ev.dst,
        dport: ev.dport,
        _pad: [0; 6],
    }))
}

/// A key's bytes as the map holds them.
fn key_bytes(k: &cork_allow_key) -> Key {
    // SAFETY: cork_allow_key is `#[repr(C)]` integers whose padding is a field of its own
    // (cork_abi.h), so every byte is initialised; `Key` is its size exactly.
    unsafe { std::mem::transmute::<cork_allow_key, Key>(*k) }
}

/// The key the map holds as bytes.
fn key_struct(k: &Key) -> cork_allow_key {
    // SAFETY: any 32 bytes are a valid cork_allow_key (integers only), of its size.
    unsafe { std::mem::transmute::<Key, cork_allow_key>(*k) }
}

/// A record standing for a flow whose own record was lost: what the key and the slot's
/// rule say.
fn event_of(k: &Key, rule_id: u32, now_boot_ns: u64) -> cork_event {
    let k = key_struct(k);
    cork_event {
        ts_boot_ns: now_boot_ns,
        pid: k.pid,
        rule_id,
        dst: k.dst,
        dport: k.dport,
        hook: k.hook,
        verdict: cork_verdict::CORK_VERDICT_ALLOW as u8,
        reason: cork_reason::CORK_REASON_ALLOW_RULE as u8,
        family: k.family,
        proto: k.proto,
        sock_type: k.sock_type,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(pid: u32, last: u8) -> cork_event {
        let mut ev = cork_event {
            ts_boot_ns: 7,
            pid,
            rule_id: 3,
            dport: 443,
            hook: cork_hook::CORK_HOOK_CONNECT4 as u8,
            verdict: cork_verdict::CORK_VERDICT_ALLOW as u8,
            reason: cork_reason::CORK_REASON_ALLOW_RULE as u8,
            family: libc::AF_INET as u8,
            proto: 6,
            sock_type: 1,
            ..Default::default()
        };
        ev.dst[..4].copy_from_slice(&[198, 51, 100, last]);
        ev
    }

    const SECOND: u64 = 1_000_000_000;

    /// A summary as the assertions compare it: its record's time, process and rule, and
    /// its count.
    type Seen = (u64, u32, u32, u64);

    fn seen((ev, n): (cork_event, u64)) -> Seen {
        (ev.ts_boot_ns, ev.pid, ev.rule_id, n)
    }

    fn all_seen(v: Vec<(cork_event, u64)>) -> Vec<Seen> {
        v.into_iter().map(seen).collect()
    }

    fn reader() -> CountedAllows {
        CountedAllows::over(AllowSlots::anonymous().expect("anonymous memory maps"))
    }

    fn slot_of(ev: &cork_event) -> (Key, usize) {
        let key = key_of(ev).expect("countable");
        (key, crate::allow_slots::slots_of(&key).0)
    }

    #[test]
    fn a_window_is_summed_up_before_the_record_that_restarts_it_and_a_quiet_one_by_the_sweep() {
        let mut r = reader();
        let first = allow(42, 10);
        let (key, at) = slot_of(&first);
        // The program records the flow's first connect and claims its slot.
        r.slots.claim(at, &key, first.rule_id, SECOND);
        assert!(
            r.note(&first).is_none(),
            "a first record has nothing before it"
        );
        r.slots.count(at, 5, SECOND);
        let mut second = first;
        second.ts_boot_ns = 2 * SECOND;
        assert_eq!(
            r.note(&second).map(seen),
            Some(seen((first, 5))),
            "summed as the record before"
        );
        r.slots.count(at, 2, 3 * SECOND);
        assert!(
            r.sweep(2 * SECOND, false).is_empty(),
            "its window is still open"
        );
        assert_eq!(
            all_seen(r.sweep(3 * SECOND, false)),
            vec![seen((second, 2))]
        );
        assert!(
            r.sweep(3 * SECOND, true).is_empty(),
            "nothing is reported twice"
        );
    }

    #[test]
    fn an_idle_slot_is_freed_and_its_flow_starts_again() {
        let mut r = reader();
        let ev = allow(7, 11);
        let (key, at) = slot_of(&ev);
        r.slots.claim(at, &key, ev.rule_id, SECOND);
        r.note(&ev);
        r.slots.count(at, 1, SECOND);
        let idle = SECOND + IDLE.as_nanos() as u64;
        assert_eq!(
            all_seen(r.sweep(idle, false)),
            vec![seen((ev, 1))],
            "reported before it goes"
        );
        assert!(r.slots.live(at).is_some(), "not idle long enough yet");
        assert!(r.sweep(idle + 1, false).is_empty());
        assert_eq!(r.slots.live(at), None, "freed");
        // A new claim counts from zero, and the flow's next record is a first one.
        r.slots.claim(at, &key, ev.rule_id, idle + 2 * SECOND);
        assert!(r.note(&ev).is_none());
        r.slots.count(at, 3, idle + 2 * SECOND);
        assert_eq!(
            all_seen(r.sweep(idle + 2 * SECOND, false)),
            vec![seen((ev, 3))]
        );
    }

    #[test]
    fn counts_standing_when_the_reader_starts_were_the_last_readers() {
        let slots = AllowSlots::anonymous().expect("anonymous memory maps");
        let ev = allow(9, 12);
        let (key, at) = slot_of(&ev);
        slots.claim(at, &key, ev.rule_id, SECOND);
        slots.count(at, 4, SECOND);
        let mut r = CountedAllows::over(slots);
        assert!(r.sweep(2 * SECOND, true).is_empty());
        r.slots.count(at, 1, SECOND);
        let made = r.sweep(2 * SECOND, true);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].1, 1, "only what was counted since");
    }

    #[test]
    fn a_flow_counted_under_two_rules_is_summed_up_per_rule() {
        let mut r = reader();
        let old = allow(5, 13);
        let mut new = old;
        new.rule_id = 4;
        new.ts_boot_ns = 8;
        let (key, a) = slot_of(&old);
        let b = crate::allow_slots::slots_of(&key).1;
        r.slots.claim(a, &key, old.rule_id, SECOND);
        r.slots.claim(b, &key, new.rule_id, SECOND);
        r.note(&old);
        r.note(&new);
        r.slots.count(a, 2, SECOND);
        r.slots.count(b, 3, SECOND);
        let mut made = all_seen(r.sweep(SECOND, false));
        made.sort_by_key(|m| m.2);
        assert_eq!(made, vec![seen((old, 2)), seen((new, 3))]);
    }

    #[test]
    fn a_flow_whose_record_was_lost_is_summed_up_from_its_slot() {
        let mut r = reader();
        let ev = allow(6, 14);
        let (key, at) = slot_of(&ev);
        r.slots.claim(at, &key, 77, SECOND);
        r.slots.count(at, 2, SECOND);
        let made = r.sweep(5 * SECOND, false);
        assert_eq!(made.len(), 1);
        let (stand_in, n) = made[0];
        assert_eq!(n, 2);
        assert_eq!(
            (stand_in.pid, stand_in.rule_id, stand_in.ts_boot_ns),
            (6, 77, 5 * SECOND)
        );
        assert_eq!(key_of(&stand_in), Some(key));
    }

    #[test]
    fn a_key_round_trips_to_the_flow_it_names() {
        let ev = allow(42, 10);
        let key = key_of(&ev).expect("an allow-rule connect is countable");
        let back = event_of(&key, ev.rule_id, 99);
        assert_eq!(key_of(&back), Some(key));
        assert_eq!((back.pid, back.rule_id, back.dport), (42, 3, 443));
        assert_eq!(back.dst, ev.dst);
        assert_eq!(back.ts_boot_ns, 99);
    }

    #[test]
    fn only_allow_rule_connects_are_countable() {
        let mut deny = allow(1, 1);
        deny.verdict = cork_verdict::CORK_VERDICT_DENY as u8;
        assert_eq!(key_of(&deny), None);
        let mut proxied = allow(1, 1);
        proxied.reason = cork_reason::CORK_REASON_PROXY_REDIRECT as u8;
        assert_eq!(key_of(&proxied), None);
        let mut datagram = allow(1, 1);
        datagram.hook = cork_hook::CORK_HOOK_SENDMSG4 as u8;
        assert_eq!(key_of(&datagram), None);
        assert_ne!(key_of(&allow(1, 1)), key_of(&allow(2, 1)), "per process");
        assert_ne!(
            key_of(&allow(1, 1)),
            key_of(&allow(1, 2)),
            "per destination"
        );
    }

    #[test]
    fn the_key_layout_is_the_kernels() {
        assert_eq!(
            std::mem::size_of::<crate::abi::cork_allow_key>(),
            std::mem::size_of::<Key>()
        );
        let k = crate::abi::cork_allow_key::default();
        let base = &k as *const _ as usize;
        assert_eq!(&k.hook as *const _ as usize - base, 4);
        assert_eq!(&k.sock_type as *const _ as usize - base, 7);
        assert_eq!(&k.dst as *const _ as usize - base, 8);
        assert_eq!(&k.dport as *const _ as usize - base, 24);
    }
}
