//! Writes a [`KernelPlan`] into one policy slot of a bottle's maps and reads it back, and
//! flips the live slot (`cork_gen`, see cork_maps.h). The plan is pure data from the policy
//! crate; this is the only place it becomes ABI structs, with its rule ids tagged by slot.

use std::net::IpAddr;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData};
use cork_policy::{
    Action, KernelPlan, LearnedEntry, PolicySlot, PrefixEntry, Proto, Redirect, UnixEntry,
    UnixName, tag_rule,
};

use super::abi::{
    cork_action, cork_port_rule, cork_prefix_value, cork_proto_sel, cork_unix_key, cork_unix_kind,
    cork_unix_value,
};
use super::mapset::MapSet;
use super::trie;

use super::abi::map_names as names;

/// The live slot's one-word map.
pub const GEN: &str = names::CORK_GEN;

/// The policy maps of one slot.
#[derive(Debug, Clone, Copy)]
pub struct SlotMaps {
    pub v4: &'static str,
    pub v6: &'static str,
    pub host_ports: &'static str,
    pub unix: &'static str,
}

/// The maps of `slot` (0: the unsuffixed ones, 1: the `_1` ones).
pub fn slot_maps(slot: PolicySlot) -> SlotMaps {
    if slot == 0 {
        SlotMaps {
            v4: names::CORK_RULES_V4,
            v6: names::CORK_RULES_V6,
            host_ports: names::CORK_HOST_PORTS,
            unix: names::CORK_UNIX_NAMES,
        }
    } else {
        SlotMaps {
            v4: names::CORK_RULES_V4_1,
            v6: names::CORK_RULES_V6_1,
            host_ports: names::CORK_HOSTPORT_1,
            unix: names::CORK_UNIXNAME_1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("map {0} is missing from the loaded object")]
    Missing(&'static str),
    #[error("map {map}: {operation}")]
    Aya {
        map: &'static str,
        operation: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {map} does not hold what the policy says after writing it: {detail}")]
    Mismatch { map: &'static str, detail: String },
    #[error("map {map}: batch operation")]
    Batch {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("map {map}: {operation}")]
    Io {
        map: &'static str,
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("registering the audit ring buffer with the runtime")]
    Register(#[source] std::io::Error),
}

pub(crate) fn aya_err(
    map: &'static str,
    operation: &'static str,
) -> impl Fn(aya::maps::MapError) -> MapError {
    move |source| MapError::Aya {
        map,
        operation,
        source,
    }
}

/// The kernel value for one prefix entry in the maps of `slot`.
pub fn prefix_value(entry: &PrefixEntry, slot: PolicySlot) -> cork_prefix_value {
    let mut v = cork_prefix_value {
        count: entry.slots.len() as u32,
        static_count: entry.slots.len() as u32,
        ..Default::default()
    };
    for (dst, s) in v.slots.iter_mut().zip(&entry.slots) {
        *dst = cork_port_rule {
            port_lo: s.port_lo,
            port_hi: s.port_hi,
            proto: match s.proto {
                Proto::Tcp => cork_proto_sel::CORK_PROTO_TCP as u8,
                Proto::Udp => cork_proto_sel::CORK_PROTO_UDP as u8,
                Proto::Any => cork_proto_sel::CORK_PROTO_ANY as u8,
            },
            action: match (s.action, s.redirect) {
                (Action::Deny, _) => cork_action::CORK_ACTION_DENY as u8,
                (Action::Allow, Redirect::None) => cork_action::CORK_ACTION_ALLOW as u8,
                (Action::Allow, Redirect::Web) => cork_action::CORK_ACTION_REDIRECT_WEB as u8,
                (Action::Allow, Redirect::All) => cork_action::CORK_ACTION_REDIRECT as u8,
            },
            _pad: [0; 2],
            rule_id: tag_rule(s.rule_id, slot),
        };
    }
    v
}

/// The kernel value for a learned host entry in the maps of `slot`, valid until
/// `until_boot_ns` (CLOCK_BOOTTIME, as `bpf_ktime_get_boot_ns`).
pub(super) fn learned_value(
    entry: &LearnedEntry,
    until_boot_ns: u64,
    slot: PolicySlot,
) -> cork_prefix_value {
    let mut v = prefix_value(
        &PrefixEntry {
            prefix: entry.prefix,
            slots: entry.slots.clone(),
        },
        slot,
    );
    v.static_count = entry.static_count as u32;
    v.learned_until_ns = until_boot_ns;
    v
}

fn insert_host<const N: usize>(
    ebpf: &mut MapSet,
    name: &'static str,
    addr: [u8; N],
    value: cork_prefix_value,
) -> Result<(), MapError> {
    let map = ebpf.map_mut(name).ok_or(MapError::Missing(name))?;
    let mut trie: LpmTrie<&mut MapData, [u8; N], cork_prefix_value> =
        LpmTrie::try_from(map).map_err(aya_err(name, "open"))?;
    trie.insert(&Key::new((N * 8) as u32, addr), value, 0)
        .map_err(aya_err(name, "insert learned"))
}

/// Installs (or refreshes) a learned host entry in slot 0 (tests of a fresh bottle). One
/// map update: the kernel sees the old value or the new one, never a mix.
pub fn learn(ebpf: &mut MapSet, entry: &LearnedEntry, until_boot_ns: u64) -> Result<(), MapError> {
    let value = learned_value(entry, until_boot_ns, 0);
    let maps = slot_maps(0);
    let written = match entry.prefix.addr() {
        IpAddr::V4(a) => insert_host(ebpf, maps.v4, a.octets(), value),
        IpAddr::V6(a) => insert_host(ebpf, maps.v6, a.octets(), value),
    };
    let map = ebpf.map_mut(GEN).ok_or(MapError::Missing(GEN))?;
    let mut word: Array<&mut MapData, u32> = Array::try_from(map).map_err(aya_err(GEN, "open"))?;
    let mut count = learns(&word)?;
    count_learn(&mut word, &mut count)?;
    written
}

/// The kernel key of a unix name: its kind, length and bytes, zero past the length.
pub fn unix_key(name: &UnixName) -> cork_unix_key {
    let mut key = cork_unix_key {
        kind: if name.is_abstract() {
            cork_unix_kind::CORK_UNIX_ABSTRACT as u8
        } else {
            cork_unix_kind::CORK_UNIX_PATH as u8
        },
        ..Default::default()
    };
    // The policy crate keeps names within sun_path, which is the key's size.
    let bytes = name.bytes();
    let n = bytes.len().min(key.name.len());
    key.name[..n].copy_from_slice(&bytes[..n]);
    key.len = n as u8;
    key
}

/// A unix entry as comparable bytes: (kind, len, name, rule id, action).
type UnixRow = (u8, u8, Vec<u8>, u32, u8);

fn unix_row(key: &cork_unix_key, value: &cork_unix_value) -> UnixRow {
    (
        key.kind,
        key.len,
        key.name.to_vec(),
        value.rule_id,
        value.action,
    )
}

fn unix_value(entry: &UnixEntry, slot: PolicySlot) -> cork_unix_value {
    cork_unix_value {
        rule_id: tag_rule(entry.rule_id, slot),
        action: match entry.action {
            Action::Allow => cork_action::CORK_ACTION_ALLOW as u8,
            Action::Deny => cork_action::CORK_ACTION_DENY as u8,
        },
        ..Default::default()
    }
}

/// Fills the empty slot-0 maps of a freshly loaded bottle (slot 0 is live from the start).
pub fn write_plan(ebpf: &mut MapSet, plan: &KernelPlan) -> Result<(), MapError> {
    write_slot(ebpf, plan, 0)
}

/// Writes `plan` into the maps of `slot`, which must be empty (see [`clear_slot`]).
pub fn write_slot(ebpf: &mut MapSet, plan: &KernelPlan, slot: PolicySlot) -> Result<(), MapError> {
    let maps = slot_maps(slot);
    trie::write(ebpf, maps, plan, slot)?;
    let map = ebpf
        .map_mut(maps.host_ports)
        .ok_or(MapError::Missing(maps.host_ports))?;
    let mut ports: HashMap<&mut MapData, u16, u8> =
        HashMap::try_from(map).map_err(aya_err(maps.host_ports, "open"))?;
    for p in &plan.host_ports {
        ports
            .insert(p, 1, 0)
            .map_err(aya_err(maps.host_ports, "insert"))?;
    }
    let map = ebpf
        .map_mut(maps.unix)
        .ok_or(MapError::Missing(maps.unix))?;
    let mut names: HashMap<&mut MapData, cork_unix_key, cork_unix_value> =
        HashMap::try_from(map).map_err(aya_err(maps.unix, "open"))?;
    for e in &plan.unix {
        names
            .insert(unix_key(&e.name), unix_value(e, slot), 0)
            .map_err(aya_err(maps.unix, "insert"))?;
    }
    Ok(())
}

/// Empties every map of `slot` (the one not live: the programs do not read it).
pub fn clear_slot(ebpf: &mut MapSet, slot: PolicySlot) -> Result<(), MapError> {
    let maps = slot_maps(slot);
    trie::clear(ebpf, maps)?;
    clear_hash::<u16, u8>(ebpf, maps.host_ports)?;
    clear_hash::<cork_unix_key, cork_unix_value>(ebpf, maps.unix)
}

fn clear_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut MapSet,
    name: &'static str,
) -> Result<(), MapError> {
    let map = ebpf.map_mut(name).ok_or(MapError::Missing(name))?;
    let mut hash: HashMap<&mut MapData, K, V> =
        HashMap::try_from(map).map_err(aya_err(name, "open"))?;
    let keys: Vec<K> = hash
        .keys()
        .collect::<Result<_, _>>()
        .map_err(aya_err(name, "iterate"))?;
    for k in &keys {
        hash.remove(k).map_err(aya_err(name, "remove"))?;
    }
    Ok(())
}

/// `cork_gen`'s words: the live slot (its low bit; the rest counts flips), and the DNS
/// learner's writes (see cork_maps.h).
const GEN_FLIPS: u32 = 0;
const GEN_LEARNS: u32 = 1;

/// The slot the programs read now.
pub fn live_slot(ebpf: &MapSet) -> Result<PolicySlot, MapError> {
    let map = ebpf.map(GEN).ok_or(MapError::Missing(GEN))?;
    let word: Array<&MapData, u32> = Array::try_from(map).map_err(aya_err(GEN, "open"))?;
    let flips = word.get(&GEN_FLIPS, 0).map_err(aya_err(GEN, "read"))?;
    Ok(u8::from(flips & 1 != 0))
}

/// Makes `slot` the live one: one word, read once by every decision. The word also counts
/// the flips, so a verdict the programs keep (cork_policy_gen) never outlives one.
pub fn set_live_slot(ebpf: &mut MapSet, slot: PolicySlot) -> Result<(), MapError> {
    let map = ebpf.map_mut(GEN).ok_or(MapError::Missing(GEN))?;
    let mut word: Array<&mut MapData, u32> = Array::try_from(map).map_err(aya_err(GEN, "open"))?;
    let flips = word.get(&GEN_FLIPS, 0).map_err(aya_err(GEN, "read"))?;
    let next = ((flips >> 1).wrapping_add(1) << 1) | u32::from(slot & 1);
    word.set(GEN_FLIPS, next, 0).map_err(aya_err(GEN, "write"))
}

/// The DNS learner's count of its writes into the tries (see [`count_learn`]).
pub(crate) fn learns<T: std::borrow::Borrow<MapData>>(
    generation: &Array<T, u32>,
) -> Result<u32, MapError> {
    generation.get(&GEN_LEARNS, 0).map_err(aya_err(GEN, "read"))
}

/// Counts a write into the tries other than a flip (the DNS learner's): a verdict the
/// programs keep (cork_policy_gen) never outlives one. `learns` is the word as the caller
/// last read or wrote it — only the learner writes it, so it need not be read again.
pub(crate) fn count_learn<T: std::borrow::BorrowMut<MapData>>(
    generation: &mut Array<T, u32>,
    learns: &mut u32,
) -> Result<(), MapError> {
    let next = learns.wrapping_add(1);
    generation
        .set(GEN_LEARNS, next, 0)
        .map_err(aya_err(GEN, "write"))?;
    *learns = next;
    Ok(())
}

/// Reads the maps of `slot` back and compares them with the plan. `learned` = the bottle
/// has been running: entries the DNS proxy learned are set aside (a learned entry on a
/// manifest prefix must still hold that prefix's own slots first, unchanged).
pub fn verify_plan(
    ebpf: &MapSet,
    plan: &KernelPlan,
    slot: PolicySlot,
    learned: bool,
) -> Result<(), MapError> {
    let maps = slot_maps(slot);
    trie::verify(ebpf, maps, plan, slot, learned)?;
    let map = ebpf
        .map(maps.host_ports)
        .ok_or(MapError::Missing(maps.host_ports))?;
    let ports: HashMap<&MapData, u16, u8> =
        HashMap::try_from(map).map_err(aya_err(maps.host_ports, "open"))?;
    let mut got: Vec<u16> = ports
        .keys()
        .collect::<Result<_, _>>()
        .map_err(aya_err(maps.host_ports, "iterate"))?;
    got.sort_unstable();
    let mut want = plan.host_ports.clone();
    want.sort_unstable();
    want.dedup();
    if got != want {
        return Err(MapError::Mismatch {
            map: maps.host_ports,
            detail: format!("{got:?} != {want:?}"),
        });
    }
    verify_unix(ebpf, maps.unix, &plan.unix, slot)
}

fn verify_unix(
    ebpf: &MapSet,
    name: &'static str,
    entries: &[UnixEntry],
    slot: PolicySlot,
) -> Result<(), MapError> {
    let map = ebpf.map(name).ok_or(MapError::Missing(name))?;
    let names: HashMap<&MapData, cork_unix_key, cork_unix_value> =
        HashMap::try_from(map).map_err(aya_err(name, "open"))?;
    let mut got: Vec<UnixRow> = Vec::new();
    for item in names.iter() {
        let (k, v) = item.map_err(aya_err(name, "iterate"))?;
        got.push(unix_row(&k, &v));
    }
    let mut want: Vec<UnixRow> = entries
        .iter()
        .map(|e| unix_row(&unix_key(&e.name), &unix_value(e, slot)))
        .collect();
    got.sort();
    want.sort();
    if got != want {
        return Err(MapError::Mismatch {
            map: name,
            detail: format!("{} entries, {} expected", got.len(), want.len()),
        });
    }
    Ok(())
}
