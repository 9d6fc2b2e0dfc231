//! The agent's side of `cork_allows`' slot protocol (`struct cork_allow_slot`,
//! `cork_allow_counted` in ebpf/include/cork_events.h): the array mapped into the agent's
//! memory, the hash that names a flow's two slots, reading a live slot and freeing one.
//!
//! Only the programs claim a slot (FREE → CLAIMED → LIVE, compare-and-swap) and write its
//! key and counts; only the agent frees one (LIVE → FREE, compare-and-swap here). A LIVE
//! slot's key does not change until the agent frees it, so the key read after an acquire
//! load of LIVE is the flow's.

use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aya::maps::MapData;

use crate::MapError;
use crate::abi::{
    CORK_ALLOW_FREE, CORK_ALLOW_LIVE, CORK_MAX_ALLOW_FLOWS, cork_allow_key, cork_allow_slot,
    cork_allow_value,
};

const ALLOWS: &str = crate::abi::map_names::CORK_ALLOWS;
/// The multiplier of `cork_allow_hash` (cork_events.h).
const HASH_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// A flow's key as the map holds it (`struct cork_allow_key`).
pub type Key = [u8; std::mem::size_of::<cork_allow_key>()];

/// `struct cork_allow_slot` as the agent reaches it: every field an atomic, since the
/// programs write them on other CPUs while the agent reads.
#[repr(C)]
struct Shared {
    state: AtomicU64,
    key: [AtomicU64; 4],
    window_end_ns: AtomicU64,
    counted: AtomicU64,
    rule_id: AtomicU32,
    _pad: AtomicU32,
    policy_gen: AtomicU64,
    open_until_jiffies: AtomicU64,
    keeper: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Shared>() == std::mem::size_of::<cork_allow_slot>());
const _: () = assert!(std::mem::size_of::<Key>() == 32);
/// Where `cork_allow_slot.value` starts: every value field's offset is from it.
const VALUE: usize = std::mem::offset_of!(cork_allow_slot, value);
const _: () = assert!(
    std::mem::offset_of!(Shared, key) == std::mem::offset_of!(cork_allow_slot, key)
        && std::mem::offset_of!(Shared, window_end_ns)
            == VALUE + std::mem::offset_of!(cork_allow_value, window_end_ns)
        && std::mem::offset_of!(Shared, counted)
            == VALUE + std::mem::offset_of!(cork_allow_value, counted)
        && std::mem::offset_of!(Shared, rule_id)
            == VALUE + std::mem::offset_of!(cork_allow_value, rule_id)
        && std::mem::offset_of!(Shared, policy_gen)
            == VALUE + std::mem::offset_of!(cork_allow_value, policy_gen)
        && std::mem::offset_of!(Shared, open_until_jiffies)
            == VALUE + std::mem::offset_of!(cork_allow_value, open_until_jiffies)
        && std::mem::offset_of!(Shared, keeper)
            == VALUE + std::mem::offset_of!(cork_allow_value, keeper)
);

/// What a live slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub key: Key,
    /// The allow rule the slot counts for (fixed while it is live).
    pub rule_id: u32,
    pub counted: u64,
    pub window_end_ns: u64,
}

/// The bottle's `cork_allows`, mapped.
pub struct AllowSlots {
    base: NonNull<Shared>,
    len: usize,
    /// Holds the map (and its fd) for as long as it is mapped (none: a test's memory).
    _map: Option<MapData>,
}

// SAFETY: the mapping is plain shared memory reached only through atomics; moving it to
// another thread moves nothing thread-bound.
unsafe impl Send for AllowSlots {}

impl AllowSlots {
    /// Maps the array (BPF_F_MMAPABLE, CORK_MAX_ALLOW_FLOWS slots of cork_allow_slot),
    /// after checking the kernel's map is that shape.
    pub fn map(map: MapData) -> Result<Self, MapError> {
        let info = map.info().map_err(crate::maps::aya_err(ALLOWS, "info"))?;
        let len = CORK_MAX_ALLOW_FLOWS as usize;
        if info.max_entries() as usize != len
            || info.value_size() as usize != std::mem::size_of::<Shared>()
        {
            return Err(MapError::Mismatch {
                map: ALLOWS,
                detail: format!(
                    "{} slots of {} bytes, expected {len} of {} (a program set of another \
                     cork build?)",
                    info.max_entries(),
                    info.value_size(),
                    std::mem::size_of::<Shared>()
                ),
            });
        }
        let fd = map.fd().as_fd().as_raw_fd();
        Self::mapped(len, libc::MAP_SHARED, fd, Some(map))
    }

    /// `len` slots of `fd` (or of anonymous memory, with `MAP_ANONYMOUS` and fd -1).
    fn mapped(len: usize, flags: i32, fd: i32, map: Option<MapData>) -> Result<Self, MapError> {
        let bytes = len * std::mem::size_of::<Shared>();
        // SAFETY: a fresh shared mapping of exactly `len` slots: of the map's fd (its size
        // checked by the caller; an mmapable array's values start at offset 0, one slot
        // apart — the kernel refuses a map without BPF_F_MMAPABLE, an error here, not
        // undefined behaviour), or of fresh zeroed memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MapError::Io {
                map: ALLOWS,
                operation: "mmap",
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(ptr.cast::<Shared>()).ok_or(MapError::Io {
            map: ALLOWS,
            operation: "mmap",
            source: std::io::Error::other("mapped at address 0"),
        })?;
        Ok(AllowSlots {
            base,
            len,
            _map: map,
        })
    }

    /// Zeroed slots in the process's own memory, written by the test as the programs
    /// would write them.
    #[cfg(test)]
    pub(crate) fn anonymous() -> Result<Self, MapError> {
        let flags = libc::MAP_SHARED | libc::MAP_ANONYMOUS;
        Self::mapped(CORK_MAX_ALLOW_FLOWS as usize, flags, -1, None)
    }

    /// Does what `cork_allow_claim` does (the test's stand-in for a program).
    #[cfg(test)]
    pub(crate) fn claim(&self, at: usize, key: &Key, rule_id: u32, window_end_ns: u64) {
        let Some(s) = self.slot(at) else { return };
        for (word, chunk) in s.key.iter().zip(key.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            word.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
        s.rule_id.store(rule_id, Ordering::Relaxed);
        s.counted.store(0, Ordering::Relaxed);
        s.window_end_ns.store(window_end_ns, Ordering::Relaxed);
        s.state
            .store(u64::from(crate::abi::CORK_ALLOW_LIVE), Ordering::Release);
    }

    /// Counts `n` connects in slot `at`, its window ending at `window_end_ns` (the test's
    /// stand-in for a program).
    #[cfg(test)]
    pub(crate) fn count(&self, at: usize, n: u64, window_end_ns: u64) {
        if let Some(s) = self.slot(at) {
            s.counted.fetch_add(n, Ordering::AcqRel);
            s.window_end_ns.store(window_end_ns, Ordering::Release);
        }
    }

    fn slot(&self, at: usize) -> Option<&Shared> {
        if at >= self.len {
            return None;
        }
        // SAFETY: `at` is inside the mapping, which lives as long as `self`; `Shared` is
        // all atomics, so any bytes the programs wrote are a valid value of it.
        Some(unsafe { &*self.base.as_ptr().add(at) })
    }

    /// Slot `at` if it is live.
    pub fn live(&self, at: usize) -> Option<Live> {
        let s = self.slot(at)?;
        if s.state.load(Ordering::Acquire) != u64::from(CORK_ALLOW_LIVE) {
            return None;
        }
        let mut key = [0u8; 32];
        for (chunk, word) in key.chunks_exact_mut(8).zip(&s.key) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        Some(Live {
            key,
            rule_id: s.rule_id.load(Ordering::Relaxed),
            counted: s.counted.load(Ordering::Acquire),
            window_end_ns: s.window_end_ns.load(Ordering::Acquire),
        })
    }

    /// Every live slot, with its index.
    pub fn all_live(&self) -> Vec<(usize, Live)> {
        (0..self.len)
            .filter_map(|at| self.live(at).map(|l| (at, l)))
            .collect()
    }

    /// The live slots that count `key` for `rule_id` (of the flow's two candidates).
    pub fn find(&self, key: &Key, rule_id: u32) -> Vec<(usize, Live)> {
        let (a, b) = slots_of(key);
        [a, b]
            .into_iter()
            .filter_map(|at| self.live(at).map(|l| (at, l)))
            .filter(|(_, l)| &l.key == key && l.rule_id == rule_id)
            .collect()
    }

    /// Frees slot `at` if it is still live; the caller decided the flow is idle.
    pub fn free(&self, at: usize) -> bool {
        self.slot(at).is_some_and(|s| {
            s.state
                .compare_exchange(
                    u64::from(CORK_ALLOW_LIVE),
                    u64::from(CORK_ALLOW_FREE),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        })
    }
}

impl Drop for AllowSlots {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of this length, unmapped once.
        unsafe {
            libc::munmap(
                self.base.as_ptr().cast(),
                self.len * std::mem::size_of::<Shared>(),
            );
        }
    }
}

/// A flow's two slots, as `cork_allow_counted` picks them.
pub fn slots_of(key: &Key) -> (usize, usize) {
    let w = |i: usize| {
        key.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    };
    let mut h = w(0).wrapping_mul(HASH_MUL);
    h = (h ^ w(1)).wrapping_mul(HASH_MUL);
    h = (h ^ w(2)).wrapping_mul(HASH_MUL);
    h = (h ^ w(3)).wrapping_mul(HASH_MUL);
    h ^= h >> 29;
    let mask = u64::from(CORK_MAX_ALLOW_FLOWS) - 1;
    let a = h & mask;
    let mut b = (h >> 32) & mask;
    if b == a {
        b = a ^ 1;
    }
    (a as usize, b as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_distinct_slots_inside_the_array() {
        for seed in 0u8..=255 {
            let mut key = [0u8; 32];
            key.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = seed.wrapping_mul(31).wrapping_add(i as u8));
            let (a, b) = slots_of(&key);
            assert_ne!(a, b);
            assert!(a < CORK_MAX_ALLOW_FLOWS as usize && b < CORK_MAX_ALLOW_FLOWS as usize);
        }
    }

    #[test]
    fn flows_that_differ_in_one_field_spread_over_the_array() {
        // Connects of one process to 1 000 addresses: few share a first slot.
        let mut firsts = std::collections::HashSet::new();
        for last in 0u32..1000 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&4242u32.to_ne_bytes());
            key[8..12].copy_from_slice(&[198, 51, (last >> 8) as u8, last as u8]);
            firsts.insert(slots_of(&key).0);
        }
        assert!(firsts.len() > 800, "{} distinct first slots", firsts.len());
    }
}
