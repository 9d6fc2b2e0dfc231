//! Addresses the DNS proxy learned, written into a running bottle's prefix tries (opened
//! from their pins, so the proxy needs no handle on the loaded objects). Each entry carries
//! the static slots that already applied to the address plus the allowing names' slots,
//! valid until the answer's clamped TTL runs out — the kernel checks that expiry itself.
//! Expired entries are swept when the tries fill up, so learning never crowds out the
//! manifest's own prefixes.
//!
//! The learner writes into the live policy slot, judged by the policy of that slot's
//! generation, and remembers which name taught each address until when: a policy update
//! carries what is still valid and still allowed into the next slot before it goes live
//! ([`UpdateLearned`]), and nothing is learned while an update holds the learner.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, Map, MapData};
use cork_policy::{KernelPlan, Policy, PolicySlot};

use super::abi::cork_prefix_value;
use super::boot_ns;
use super::maps::{MapError, count_learn, learned_value, learns, prefix_value, slot_maps};

type Trie<const N: usize> = LpmTrie<MapData, [u8; N], cork_prefix_value>;

/// Why an address could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Plan(#[from] cork_policy::LearnError),
    #[error("{name:?} is not allowed by the bottle's policy in force")]
    NotAllowed { name: String },
    #[error("{map}: learning {addr}")]
    Insert {
        map: &'static str,
        addr: IpAddr,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("counting a write into the tries (the kept verdicts' generation)")]
    Generation(#[source] MapError),
}

/// What one slot's learning is judged by.
struct Judge {
    policy: Arc<Policy>,
    plan: KernelPlan,
    slot: PolicySlot,
}

/// Each learned address: the name that taught it last, and until when (boot ns).
type Taught = HashMap<IpAddr, (String, u64)>;

struct State {
    judge: Judge,
    /// `cork_gen`: every write into a trie is counted there (maps::count_learn), and
    /// the count as last written (only the learner writes it).
    generation: Array<MapData, u32>,
    learns: u32,
    v4: [Trie<4>; 2],
    v6: [Trie<16>; 2],
    taught: Taught,
}

/// Room kept for learned entries is the trie's capacity minus the static prefixes; when an
/// insert finds the trie full, expired entries are swept and the insert retried once.
pub struct MapLearner {
    state: Mutex<State>,
}

fn open<const N: usize>(pin_dir: &Path, name: &'static str) -> Result<Trie<N>, MapError> {
    let data = MapData::from_pin(pin_dir.join(name)).map_err(|source| MapError::Aya {
        map: name,
        operation: "open pin",
        source,
    })?;
    LpmTrie::try_from(Map::LpmTrie(data)).map_err(|source| MapError::Aya {
        map: name,
        operation: "open",
        source,
    })
}

impl MapLearner {
    /// The learner of a bottle whose live slot `slot` holds `policy`.
    pub fn open(pin_dir: &Path, policy: Arc<Policy>, slot: PolicySlot) -> Result<Self, MapError> {
        let (s0, s1) = (slot_maps(0), slot_maps(1));
        let gen_name = crate::abi::map_names::CORK_GEN;
        let generation = MapData::from_pin(pin_dir.join(gen_name))
            .and_then(|data| Array::try_from(Map::Array(data)))
            .map_err(|source| MapError::Aya {
                map: gen_name,
                operation: "open pin",
                source,
            })?;
        let learns = learns(&generation)?;
        Ok(MapLearner {
            state: Mutex::new(State {
                judge: Judge {
                    plan: policy.kernel_plan(),
                    policy,
                    slot,
                },
                generation,
                learns,
                v4: [open::<4>(pin_dir, s0.v4)?, open::<4>(pin_dir, s1.v4)?],
                v6: [open::<16>(pin_dir, s0.v6)?, open::<16>(pin_dir, s1.v6)?],
                taught: HashMap::new(),
            }),
        })
    }

    /// Allows `addr`, an answer for `name`, during `ttl` seconds for what the policy in
    /// force allows `name` (plus whatever static rules say).
    pub fn learn(&self, addr: IpAddr, name: &str, ttl: u32) -> Result<(), LearnError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        let until = boot_ns().saturating_add(u64::from(ttl) * 1_000_000_000);
        let written = write(
            &state.judge,
            &mut state.v4,
            &mut state.v6,
            &mut state.taught,
            addr,
            name,
            until,
        );
        // Counted whatever the write did (a sweep may have run before an insert failed).
        count_learn(&mut state.generation, &mut state.learns).map_err(LearnError::Generation)?;
        written?;
        state.taught.insert(addr, (name.to_owned(), until));
        Ok(())
    }

    /// Holds the learner for a policy update: nothing is learned until the returned value
    /// commits or drops.
    pub fn begin_update(&self) -> UpdateLearned<'_> {
        UpdateLearned {
            state: self.state.lock().unwrap_or_else(|p| p.into_inner()),
            carried: None,
        }
    }
}

/// The learner, held by a policy update (see [`MapLearner::begin_update`]).
pub struct UpdateLearned<'a> {
    state: MutexGuard<'a, State>,
    /// What [`UpdateLearned::carry_over`] wrote, for [`UpdateLearned::commit`].
    carried: Option<(Judge, Taught)>,
}

impl UpdateLearned<'_> {
    /// Writes into `slot` (staged, not live) every learned address whose answer is still
    /// valid and whose name `policy` still allows; returns how many. The live slot goes
    /// on being judged by the current policy until [`UpdateLearned::commit`].
    pub fn carry_over(
        &mut self,
        policy: &Arc<Policy>,
        slot: PolicySlot,
    ) -> Result<usize, LearnError> {
        let next = Judge {
            plan: policy.kernel_plan(),
            policy: policy.clone(),
            slot,
        };
        let now = boot_ns();
        let valid: Taught = self
            .state
            .taught
            .iter()
            .filter(|(_, (name, until))| {
                *until > now && !next.policy.allowed_slots(name).is_empty()
            })
            .map(|(addr, taught)| (*addr, taught.clone()))
            .collect();
        let state = &mut *self.state;
        for (addr, (name, until)) in &valid {
            write(
                &next,
                &mut state.v4,
                &mut state.v6,
                &mut state.taught,
                *addr,
                name,
                *until,
            )?;
        }
        let n = valid.len();
        self.carried = Some((next, valid));
        Ok(n)
    }

    /// The kernel reads the staged slot now: learn into it, by its policy, and forget the
    /// addresses that were not carried over.
    pub fn commit(mut self) {
        if let Some((judge, taught)) = self.carried.take() {
            self.state.judge = judge;
            self.state.taught = taught;
        }
    }
}

/// Writes `addr` as taught by `name` until `until` into the slot `judge` names; `taught`
/// says which of the slot's entries were learned, for a sweep when the trie is full.
fn write(
    judge: &Judge,
    v4: &mut [Trie<4>; 2],
    v6: &mut [Trie<16>; 2],
    taught: &mut Taught,
    addr: IpAddr,
    name: &str,
    until: u64,
) -> Result<(), LearnError> {
    let slots = judge.policy.allowed_slots(name);
    if slots.is_empty() {
        return Err(LearnError::NotAllowed {
            name: name.to_owned(),
        });
    }
    let entry = judge.plan.learned_entry(addr, &slots)?;
    let value = learned_value(&entry, until, judge.slot);
    let maps = slot_maps(judge.slot);
    let i = usize::from(judge.slot);
    match entry.prefix.addr() {
        IpAddr::V4(a) => insert(&mut v4[i], judge, taught, a.octets(), value, maps.v4),
        IpAddr::V6(a) => insert(&mut v6[i], judge, taught, a.octets(), value, maps.v6),
    }
}

fn insert<const N: usize>(
    trie: &mut Trie<N>,
    judge: &Judge,
    taught: &mut Taught,
    addr: [u8; N],
    value: cork_prefix_value,
    name: &'static str,
) -> Result<(), LearnError> {
    let key = Key::new((N * 8) as u32, addr);
    if trie.insert(&key, value, 0).is_ok() {
        return Ok(());
    }
    if sweep_taught(trie, judge, taught) == 0 {
        sweep_expired(trie, judge);
    }
    trie.insert(&key, value, 0)
        .map_err(|source| LearnError::Insert {
            map: name,
            addr: ip_of(addr),
            source,
        })
}

/// Removes the learned entries whose time is up, found from what the learner taught (a
/// few syscalls per expired address, where walking a trie of 100 000 static prefixes
/// takes two per entry); returns how many. A host prefix that is also a static manifest
/// prefix goes back to its static value instead.
fn sweep_taught<const N: usize>(trie: &mut Trie<N>, judge: &Judge, taught: &mut Taught) -> usize {
    let now = boot_ns();
    let expired: Vec<([u8; N], IpAddr)> = taught
        .iter()
        .filter(|(_, (_, until))| *until <= now)
        .filter_map(|(addr, _)| octets::<N>(*addr).map(|o| (o, *addr)))
        .collect();
    if expired.is_empty() {
        return 0;
    }
    // The manifest's own host prefixes of this family, once for the whole sweep.
    let statics: HashMap<[u8; N], &cork_policy::PrefixEntry> = judge
        .plan
        .v4
        .iter()
        .chain(&judge.plan.v6)
        .filter(|e| e.prefix.len() as usize == N * 8)
        .filter_map(|e| octets::<N>(e.prefix.addr()).map(|o| (o, e)))
        .collect();
    for (data, addr) in &expired {
        let key = Key::new((N * 8) as u32, *data);
        let _ = match statics.get(data) {
            Some(e) => trie.insert(&key, prefix_value(e, judge.slot), 0),
            None => trie.remove(&key),
        };
        taught.remove(addr);
    }
    expired.len()
}

/// The address's bytes when it is of the family whose tries have `N`-byte keys (an
/// IPv4-mapped IPv6 address is IPv4, as the plan has it).
fn octets<const N: usize>(addr: IpAddr) -> Option<[u8; N]> {
    match addr.to_canonical() {
        IpAddr::V4(a) => <[u8; N]>::try_from(a.octets().as_slice()).ok(),
        IpAddr::V6(a) => <[u8; N]>::try_from(a.octets().as_slice()).ok(),
    }
}

/// The fallback when nothing taught has expired: walks the whole trie (two syscalls per
/// entry) for learned entries whose time is up, should one not be in `taught`. A host
/// prefix that is also a static manifest prefix goes back to its static value instead.
fn sweep_expired<const N: usize>(trie: &mut Trie<N>, judge: &Judge) {
    let now = boot_ns();
    let expired: Vec<Key<[u8; N]>> = trie
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, v)| v.static_count < v.count && v.learned_until_ns <= now)
        .map(|(k, _)| k)
        .collect();
    let plan = &judge.plan;
    for key in expired {
        let static_entry = plan.v4.iter().chain(&plan.v6).find(|e| {
            e.prefix.len() as u32 == key.prefix_len()
                && match e.prefix.addr() {
                    IpAddr::V4(a) => a.octets().as_slice() == key.data().as_slice(),
                    IpAddr::V6(a) => a.octets().as_slice() == key.data().as_slice(),
                }
        });
        let _ = match static_entry {
            Some(e) => trie.insert(&key, prefix_value(e, judge.slot), 0),
            None => trie.remove(&key),
        };
    }
}

fn ip_of<const N: usize>(addr: [u8; N]) -> IpAddr {
    match <[u8; 4]>::try_from(addr.as_slice()) {
        Ok(v4) => IpAddr::from(v4),
        Err(_) => {
            <[u8; 16]>::try_from(addr.as_slice()).map_or(IpAddr::from([0u8; 4]), IpAddr::from)
        }
    }
}
