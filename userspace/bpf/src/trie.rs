//! A plan's prefix entries in the two LPM tries of a policy slot: written in one batch per
//! family and read back to compare. At 100 000 prefixes per family these are most of a
//! bottle's start, and the families are independent maps (each trie has its own lock in
//! kernel/bpf/lpm_trie.c), so with many entries in both, each family gets a thread.

use std::net::IpAddr;
use std::os::fd::AsFd;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{IterableMap, Map, MapData};
use cork_policy::{KernelPlan, PolicySlot, PrefixEntry};

use super::abi::cork_prefix_value;
use super::batch;
use super::maps::{MapError, SlotMaps, aya_err, prefix_value};
use super::mapset::MapSet;

/// Entries per family from which the two families are handled on two threads.
const PARALLEL_ENTRIES: usize = 4096;

/// An entry as the trie holds it: (address bytes, prefix length) and the value. Keys in
/// that order sort as the plan's prefixes do.
type Row<const N: usize> = (([u8; N], u32), cork_prefix_value);

/// Writes `plan`'s prefix entries into the (empty) tries of `slot`.
pub(super) fn write(
    ebpf: &mut MapSet,
    maps: SlotMaps,
    plan: &KernelPlan,
    slot: PolicySlot,
) -> Result<(), MapError> {
    let (v4, v6) = {
        let map4 = ebpf.map(maps.v4).ok_or(MapError::Missing(maps.v4))?;
        let map6 = ebpf.map(maps.v6).ok_or(MapError::Missing(maps.v6))?;
        both(
            parallel(plan),
            || write_batch::<4>(map4, maps.v4, &plan.v4, slot),
            || write_batch::<16>(map6, maps.v6, &plan.v6, slot),
        )
    };
    // A kernel without batch updates: one entry at a time.
    if !v4? {
        insert_each::<4>(ebpf, maps.v4, &plan.v4, slot)?;
    }
    if !v6? {
        insert_each::<16>(ebpf, maps.v6, &plan.v6, slot)?;
    }
    Ok(())
}

/// Reads the tries of `slot` back and compares them with `plan`. `learned`: entries the
/// DNS proxy added are set aside, and one on a manifest prefix must hold that prefix's own
/// slots first, unchanged.
pub(super) fn verify(
    ebpf: &MapSet,
    maps: SlotMaps,
    plan: &KernelPlan,
    slot: PolicySlot,
    learned: bool,
) -> Result<(), MapError> {
    let map4 = ebpf.map(maps.v4).ok_or(MapError::Missing(maps.v4))?;
    let map6 = ebpf.map(maps.v6).ok_or(MapError::Missing(maps.v6))?;
    let (v4, v6) = both(
        parallel(plan),
        || verify_family::<4>(map4, maps.v4, &plan.v4, slot, learned),
        || verify_family::<16>(map6, maps.v6, &plan.v6, slot, learned),
    );
    v4.and(v6)
}

/// Empties the tries of `maps` (a slot the programs do not read).
pub(super) fn clear(ebpf: &mut MapSet, maps: SlotMaps) -> Result<(), MapError> {
    let (v4, v6) = {
        let map4 = ebpf.map(maps.v4).ok_or(MapError::Missing(maps.v4))?;
        let map6 = ebpf.map(maps.v6).ok_or(MapError::Missing(maps.v6))?;
        // Whether the maps are large is only known by reading them: always two threads.
        both(
            true,
            || clear_batch::<4>(map4, maps.v4),
            || clear_batch::<16>(map6, maps.v6),
        )
    };
    if !v4? {
        remove_each::<4>(ebpf, maps.v4)?;
    }
    if !v6? {
        remove_each::<16>(ebpf, maps.v6)?;
    }
    Ok(())
}

/// Empties one family with batch calls; `Ok(false)` when the kernel has none (the trie
/// may then be partly emptied).
fn clear_batch<const N: usize>(map: &Map, name: &'static str) -> Result<bool, MapError> {
    let trie: LpmTrie<&MapData, [u8; N], cork_prefix_value> =
        LpmTrie::try_from(map).map_err(aya_err(name, "open"))?;
    let fd = trie.map().fd().as_fd();
    // Keys first, then removals: removing while walking would skip keys.
    let mut keys: Vec<Key<[u8; N]>> = Vec::new();
    let done = batch::lookup_each(fd, |k: Key<[u8; N]>, _: cork_prefix_value| keys.push(k))
        .and_then(|()| batch::delete(fd, &keys));
    match done {
        Ok(()) => Ok(true),
        Err(e) if batch::unsupported(&e) => Ok(false),
        Err(source) => Err(MapError::Batch { map: name, source }),
    }
}

fn remove_each<const N: usize>(ebpf: &mut MapSet, name: &'static str) -> Result<(), MapError> {
    let map = ebpf.map_mut(name).ok_or(MapError::Missing(name))?;
    let mut trie: LpmTrie<&mut MapData, [u8; N], cork_prefix_value> =
        LpmTrie::try_from(map).map_err(aya_err(name, "open"))?;
    // Keys first, then removals: removing while walking would skip keys.
    let keys: Vec<Key<[u8; N]>> = trie
        .keys()
        .collect::<Result<_, _>>()
        .map_err(aya_err(name, "iterate"))?;
    for k in &keys {
        trie.remove(k).map_err(aya_err(name, "remove"))?;
    }
    Ok(())
}

fn parallel(plan: &KernelPlan) -> bool {
    plan.v4.len().min(plan.v6.len()) >= PARALLEL_ENTRIES
}

/// `a()` and `b()`, on two threads when `parallel`.
fn both<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if !parallel {
        return (a(), b());
    }
    std::thread::scope(|s| {
        let b = s.spawn(b);
        let a = a();
        (a, b.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// One family's entries as trie rows, in the plan's order. N picks the family: 4 or 16
/// address bytes; entries of the other family are skipped (the plan never mixes them).
fn row_iter<const N: usize>(
    entries: &[PrefixEntry],
    slot: PolicySlot,
) -> impl Iterator<Item = Row<N>> + '_ {
    entries
        .iter()
        .filter_map(move |e| Some((key_of::<N>(e)?, prefix_value(e, slot))))
}

/// An entry's trie key in the order used here, `None` for the other family.
fn key_of<const N: usize>(e: &PrefixEntry) -> Option<([u8; N], u32)> {
    let addr: [u8; N] = match e.prefix.addr() {
        IpAddr::V4(a) => a.octets().as_slice().try_into().ok()?,
        IpAddr::V6(a) => a.octets().as_slice().try_into().ok()?,
    };
    Some((addr, u32::from(e.prefix.len())))
}

/// Writes one family in a single call; `Ok(false)` when the kernel has no batch updates.
fn write_batch<const N: usize>(
    map: &Map,
    name: &'static str,
    entries: &[PrefixEntry],
    slot: PolicySlot,
) -> Result<bool, MapError> {
    let trie: LpmTrie<&MapData, [u8; N], cork_prefix_value> =
        LpmTrie::try_from(map).map_err(aya_err(name, "open"))?;
    let (keys, values): (Vec<_>, Vec<_>) = row_iter::<N>(entries, slot)
        .map(|((addr, len), value)| (Key::new(len, addr), value))
        .unzip();
    match batch::update(trie.map().fd().as_fd(), &keys, &values) {
        Ok(()) => Ok(true),
        Err(e) if batch::unsupported(&e) => Ok(false),
        Err(source) => Err(MapError::Batch { map: name, source }),
    }
}

fn insert_each<const N: usize>(
    ebpf: &mut MapSet,
    name: &'static str,
    entries: &[PrefixEntry],
    slot: PolicySlot,
) -> Result<(), MapError> {
    let map = ebpf.map_mut(name).ok_or(MapError::Missing(name))?;
    let mut trie: LpmTrie<&mut MapData, [u8; N], cork_prefix_value> =
        LpmTrie::try_from(map).map_err(aya_err(name, "open"))?;
    for ((addr, len), value) in row_iter::<N>(entries, slot) {
        trie.insert(&Key::new(len, addr), value, 0)
            .map_err(aya_err(name, "insert"))?;
    }
    Ok(())
}

fn verify_family<const N: usize>(
    map: &Map,
    name: &'static str,
    entries: &[PrefixEntry],
    slot: PolicySlot,
    learned: bool,
) -> Result<(), MapError> {
    let trie: LpmTrie<&MapData, [u8; N], cork_prefix_value> =
        LpmTrie::try_from(map).map_err(aya_err(name, "open"))?;
    let mut back = ReadBack::<N>::new(entries, slot, learned);
    match batch::lookup_each(trie.map().fd().as_fd(), |k, v| back.see(&k, v)) {
        Ok(()) => {}
        Err(e) if batch::unsupported(&e) => {
            // Whatever the batch call gave before it gave up is read again here.
            back.restart();
            for item in trie.iter() {
                let (k, v) = item.map_err(aya_err(name, "iterate"))?;
                back.see(&k, v);
            }
        }
        Err(source) => return Err(MapError::Batch { map: name, source }),
    }
    back.verdict()
        .map_err(|detail| MapError::Mismatch { map: name, detail })
}

/// One family's trie read back against the plan, an entry at a time.
struct ReadBack<'p, const N: usize> {
    /// The plan's entries by trie key, to find each entry read among them. Their values
    /// are made only for the entries found: the read-back holds no copy of the table.
    wanted: Vec<(([u8; N], u32), &'p PrefixEntry)>,
    slot: PolicySlot,
    /// Entries the DNS proxy added are set aside (see [`verify`]).
    learned: bool,
    /// Entries read, learned ones set aside.
    got: usize,
    /// Entries read that the plan has, with its value.
    matched: usize,
    /// Whether some entry read is not the plan's.
    differs: bool,
}

impl<'p, const N: usize> ReadBack<'p, N> {
    fn new(entries: &'p [PrefixEntry], slot: PolicySlot, learned: bool) -> Self {
        let mut wanted: Vec<_> = entries
            .iter()
            .filter_map(|e| Some((key_of::<N>(e)?, e)))
            .collect();
        if !wanted.is_sorted_by_key(|(key, _)| *key) {
            wanted.sort_unstable_by_key(|(key, _)| *key);
        }
        ReadBack {
            wanted,
            slot,
            learned,
            got: 0,
            matched: 0,
            differs: false,
        }
    }

    fn restart(&mut self) {
        (self.got, self.matched, self.differs) = (0, 0, false);
    }

    fn see(&mut self, k: &Key<[u8; N]>, mut v: cork_prefix_value) {
        let key = (k.data(), k.prefix_len());
        let found = self.wanted.binary_search_by(|(w, _)| w.cmp(&key)).ok();
        if self.learned && v.learned_until_ns != 0 {
            if found.is_none() {
                return;
            }
            // Back to the manifest prefix's own value: its static slots, nothing learned.
            v.count = v.static_count;
            v.learned_until_ns = 0;
        }
        self.got += 1;
        match found {
            Some(i) if same_value(&v, &prefix_value(self.wanted[i].1, self.slot)) => {
                self.matched += 1;
            }
            _ => self.differs = true,
        }
    }

    /// Keys are unique on both sides: every entry read matching a wanted one, as many as
    /// wanted, is the same set.
    fn verdict(&self) -> Result<(), String> {
        if self.differs || self.matched != self.wanted.len() {
            return Err(format!(
                "{} entries, {} expected",
                self.got,
                self.wanted.len()
            ));
        }
        Ok(())
    }
}

/// Values compared as their used slots only: unused slots are zero on both sides, and
/// padding is nobody's business.
fn same_value(a: &cork_prefix_value, b: &cork_prefix_value) -> bool {
    let used = |v: &cork_prefix_value| (v.count as usize).min(v.slots.len());
    (a.count, a.static_count, a.learned_until_ns) == (b.count, b.static_count, b.learned_until_ns)
        && a.slots[..used(a)]
            .iter()
            .zip(&b.slots[..used(b)])
            .all(|(x, y)| {
                (x.port_lo, x.port_hi, x.proto, x.action, x.rule_id)
                    == (y.port_lo, y.port_hi, y.proto, y.action, y.rule_id)
            })
}

#[cfg(test)]
mod tests {
    use cork_policy::{Action, Prefix, Proto, Redirect, Slot};

    use super::*;

    fn entry(prefix: &str, rule_id: u32) -> PrefixEntry {
        PrefixEntry {
            prefix: prefix.parse::<Prefix>().expect("test prefix"),
            slots: vec![Slot {
                port_lo: 443,
                port_hi: 443,
                proto: Proto::Tcp,
                action: Action::Allow,
                rule_id,
                redirect: Redirect::None,
            }],
        }
    }

    /// The plan's own entries as the kernel would give them back, in some other order.
    fn read_of(entries: &[PrefixEntry]) -> Vec<(Key<[u8; 4]>, cork_prefix_value)> {
        let mut read: Vec<_> = row_iter::<4>(entries, 1)
            .map(|((addr, len), v)| (Key::new(len, addr), v))
            .collect();
        read.reverse();
        read
    }

    fn verdict(
        entries: &[PrefixEntry],
        read: &[(Key<[u8; 4]>, cork_prefix_value)],
        learned: bool,
    ) -> Result<(), String> {
        let mut back = ReadBack::<4>::new(entries, 1, learned);
        for (k, v) in read {
            back.see(k, *v);
        }
        back.verdict()
    }

    fn plan() -> Vec<PrefixEntry> {
        // Not in the plan's order: the read-back sorts what it is given.
        vec![
            entry("198.51.100.0/24", 0),
            entry("10.0.0.0/8", 1),
            entry("198.51.100.7/32", 2),
            // The other family is not this trie's business.
            entry("2001:db8::/32", 3),
        ]
    }

    #[test]
    fn the_plan_read_back_is_the_plan() {
        let plan = plan();
        assert_eq!(verdict(&plan, &read_of(&plan), false), Ok(()));
        assert_eq!(verdict(&[], &[], false), Ok(()));
    }

    #[test]
    fn a_missing_extra_or_changed_entry_is_a_mismatch() {
        let plan = plan();
        let mut read = read_of(&plan);
        read.pop();
        assert_eq!(
            verdict(&plan, &read, false),
            Err("2 entries, 3 expected".into())
        );

        let mut read = read_of(&plan);
        read.extend(read_of(&[entry("192.0.2.0/24", 9)]));
        assert_eq!(
            verdict(&plan, &read, false),
            Err("4 entries, 3 expected".into())
        );

        let mut read = read_of(&plan);
        read[1].1.slots[0].port_hi = 444;
        assert!(verdict(&plan, &read, false).is_err());
        let mut read = read_of(&plan);
        read[1].1.slots[0].rule_id ^= 1;
        assert!(verdict(&plan, &read, false).is_err());
        // Tagged for the other slot: not what this slot must hold.
        let other: Vec<_> = row_iter::<4>(&plan, 0)
            .map(|((addr, len), v)| (Key::new(len, addr), v))
            .collect();
        assert!(verdict(&plan, &other, false).is_err());
    }

    #[test]
    fn learned_entries_are_set_aside_only_when_asked() {
        let plan = plan();
        let mut read = read_of(&plan);
        // A learned host the plan does not have.
        let mut host = read_of(&[entry("192.0.2.1/32", 5)]);
        host[0].1.learned_until_ns = 77;
        read.extend(host);
        // A learned slot on a manifest prefix, after its own static slots.
        let i = read
            .iter()
            .position(|(k, _)| k.prefix_len() == 32)
            .expect("the /32 is there");
        let v = &mut read[i].1;
        v.slots[1] = v.slots[0];
        v.slots[1].rule_id = 6;
        v.count = 2;
        v.learned_until_ns = 77;
        assert_eq!(verdict(&plan, &read, true), Ok(()));
        assert!(verdict(&plan, &read, false).is_err());
        // Learning never changes a manifest prefix's own slots.
        read[i].1.slots[0].port_lo = 1;
        assert!(verdict(&plan, &read, true).is_err());
    }
}
