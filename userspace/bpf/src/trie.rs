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

/// One family's entries as trie rows, sorted by key (the plan's own order). N picks the
/// family: 4 or 16 address bytes; entries of the other family are skipped (the plan never
/// mixes them).
fn rows<const N: usize>(entries: &[PrefixEntry], slot: PolicySlot) -> Vec<Row<N>> {
    let mut rows: Vec<Row<N>> = entries
        .iter()
        .filter_map(|e| {
            let addr: [u8; N] = match e.prefix.addr() {
                IpAddr::V4(a) => a.octets().as_slice().try_into().ok()?,
                IpAddr::V6(a) => a.octets().as_slice().try_into().ok()?,
            };
            Some(((addr, u32::from(e.prefix.len())), prefix_value(e, slot)))
        })
        .collect();
    if !rows.is_sorted_by_key(|(key, _)| *key) {
        rows.sort_unstable_by_key(|(key, _)| *key);
    }
    rows
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
    let (keys, values): (Vec<_>, Vec<_>) = rows::<N>(entries, slot)
        .into_iter()
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
    for ((addr, len), value) in rows::<N>(entries, slot) {
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
    let want = rows::<N>(entries, slot);
    let all: Vec<(Key<[u8; N]>, cork_prefix_value)> =
        match batch::lookup_all(trie.map().fd().as_fd()) {
            Ok(all) => all,
            Err(e) if batch::unsupported(&e) => trie
                .iter()
                .collect::<Result<_, _>>()
                .map_err(aya_err(name, "iterate"))?,
            Err(source) => return Err(MapError::Batch { map: name, source }),
        };
    // Keys are unique on both sides: every entry read matching a wanted one, as many as
    // wanted, is the same set.
    let (mut got, mut matched, mut same) = (0, 0, true);
    for (k, mut v) in all {
        let key = (k.data(), k.prefix_len());
        let found = want.binary_search_by(|(w, _)| w.cmp(&key)).ok();
        if learned && v.learned_until_ns != 0 {
            if found.is_none() {
                continue;
            }
            // Back to the manifest prefix's own value: its static slots, nothing learned.
            v.count = v.static_count;
            v.learned_until_ns = 0;
        }
        got += 1;
        match found {
            Some(i) if same_value(&v, &want[i].1) => matched += 1,
            _ => same = false,
        }
    }
    if !same || matched != want.len() {
        return Err(MapError::Mismatch {
            map: name,
            detail: format!("{got} entries, {} expected", want.len()),
        });
    }
    Ok(())
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
