//! Addresses the DNS proxy learned, written into a running bottle's prefix tries (opened
//! from their pins, so the proxy needs no handle on the loaded objects). Each entry carries
//! the static slots that already applied to the address plus the allowing names' slots,
//! valid until the answer's clamped TTL runs out — the kernel checks that expiry itself.
//! Expired entries are swept when the tries fill up, so learning never crowds out the
//! manifest's own prefixes.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Map, MapData};
use cork_policy::{KernelPlan, Slot};

use super::abi::cork_prefix_value;
use super::boot_ns;
use super::maps::{MapError, RULES_V4, RULES_V6, learned_value, prefix_value};

type Trie<const N: usize> = LpmTrie<MapData, [u8; N], cork_prefix_value>;

/// Why an address could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Plan(#[from] cork_policy::LearnError),
    #[error("{map}: learning {addr}")]
    Insert {
        map: &'static str,
        addr: IpAddr,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Room kept for learned entries is the trie's capacity minus the static prefixes; when an
/// insert finds the trie full, expired entries are swept and the insert retried once.
pub struct MapLearner {
    plan: KernelPlan,
    v4: Mutex<Trie<4>>,
    v6: Mutex<Trie<16>>,
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
    pub fn open(pin_dir: &Path, plan: KernelPlan) -> Result<Self, MapError> {
        Ok(MapLearner {
            plan,
            v4: Mutex::new(open::<4>(pin_dir, RULES_V4)?),
            v6: Mutex::new(open::<16>(pin_dir, RULES_V6)?),
        })
    }

    /// Allows `addr` for `slots` during `ttl` seconds (plus whatever static rules say).
    pub fn learn(&self, addr: IpAddr, slots: &[Slot], ttl: u32) -> Result<(), LearnError> {
        let entry = self.plan.learned_entry(addr, slots)?;
        let until = boot_ns().saturating_add(u64::from(ttl) * 1_000_000_000);
        let value = learned_value(&entry, until);
        match entry.prefix.addr() {
            IpAddr::V4(a) => insert(&self.v4, &self.plan, a.octets(), value, RULES_V4),
            IpAddr::V6(a) => insert(&self.v6, &self.plan, a.octets(), value, RULES_V6),
        }
    }
}

fn insert<const N: usize>(
    trie: &Mutex<Trie<N>>,
    plan: &KernelPlan,
    addr: [u8; N],
    value: cork_prefix_value,
    name: &'static str,
) -> Result<(), LearnError> {
    let mut trie = trie.lock().unwrap_or_else(|p| p.into_inner());
    let key = Key::new((N * 8) as u32, addr);
    if trie.insert(&key, value, 0).is_ok() {
        return Ok(());
    }
    sweep_expired(&mut trie, plan);
    trie.insert(&key, value, 0)
        .map_err(|source| LearnError::Insert {
            map: name,
            addr: ip_of(addr),
            source,
        })
}

/// Removes learned entries whose time is up; a host prefix that is also a static manifest
/// prefix goes back to its static value instead.
fn sweep_expired<const N: usize>(trie: &mut Trie<N>, plan: &KernelPlan) {
    let now = boot_ns();
    let expired: Vec<Key<[u8; N]>> = trie
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, v)| v.static_count < v.count && v.learned_until_ns <= now)
        .map(|(k, _)| k)
        .collect();
    for key in expired {
        let static_entry = plan.v4.iter().chain(&plan.v6).find(|e| {
            e.prefix.len() as u32 == key.prefix_len()
                && match e.prefix.addr() {
                    IpAddr::V4(a) => a.octets().as_slice() == key.data().as_slice(),
                    IpAddr::V6(a) => a.octets().as_slice() == key.data().as_slice(),
                }
        });
        let _ = match static_entry {
            Some(e) => trie.insert(&key, prefix_value(e), 0),
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
