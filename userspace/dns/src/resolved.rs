//! What the DNS proxy told one bottle, kept once: every (name, address) pair it answered,
//! with the time the answer stops counting. Two readers ask it different questions:
//!
//! - the inspecting proxy, [`Resolved::resolved`]: a flow whose SNI names
//!   `api.example.test` must go to an address the bottle got in an answer for
//!   `api.example.test` (so an allowed name cannot be used to reach an address that was
//!   only allowed for another name, or a static-CIDR address under a name);
//! - the kernel audit writer, [`Resolved::name_of`]: which name a connect's destination
//!   was answered for, to name it in the audit event.
//!
//! The kernel's own learned-address map is the third copy of the same facts and the one
//! that decides; it lives in bpf maps with its own bound, and this one only informs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// (name, address) pairs held at most. When full, expired pairs go; when still full,
/// everything goes: a bottle resolving endlessly many names must not grow the agent
/// without bound. A dropped pair only makes a later flow to it fail closed (the bottle can
/// resolve again) and a kernel event to it go unnamed.
const MAX_PAIRS: usize = 65_536;

/// Kept this long after the answer's TTL ran out: a client may open a connection a little
/// after its cached answer expired; the kernel's own learned entry still governs whether
/// the connect was allowed at all.
const GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Resolved {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_addr: HashMap<IpAddr, Names>,
    /// Pairs held, over every address.
    pairs: usize,
}

/// The names one address was answered for.
#[derive(Debug)]
struct Names {
    /// Each name with the time its answer stops counting.
    until: HashMap<Arc<str>, Instant>,
    /// The name most recently answered with this address (one of `until`'s keys).
    latest: Arc<str>,
}

impl Resolved {
    /// Records that `name` (normalised: lowercase, no trailing dot) resolved to `addr`
    /// for `ttl` seconds.
    pub fn record(&self, name: &str, addr: IpAddr, ttl: u32) {
        let now = Instant::now();
        let until = now + Duration::from_secs(u64::from(ttl)) + GRACE;
        let mut inner = self.lock();
        let inner = &mut *inner;
        let held = inner
            .by_addr
            .get(&addr)
            .and_then(|names| names.until.get_key_value(name))
            .map(|(key, _)| Arc::clone(key));
        let key = match held {
            Some(key) => key,
            None => {
                if inner.pairs >= MAX_PAIRS {
                    inner.prune(now);
                }
                inner.pairs += 1;
                Arc::from(name)
            }
        };
        let names = inner.by_addr.entry(addr).or_insert_with(|| Names {
            until: HashMap::new(),
            latest: Arc::clone(&key),
        });
        let t = names.until.entry(Arc::clone(&key)).or_insert(until);
        *t = (*t).max(until);
        names.latest = key;
    }

    /// Whether the bottle was told `addr` for `name` and that answer is still (nearly)
    /// current. IPv4-mapped addresses count as their IPv4 address.
    pub fn resolved(&self, name: &str, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let inner = self.lock();
        inner
            .by_addr
            .get(&addr)
            .and_then(|names| names.until.get(name))
            .is_some_and(|t| *t > Instant::now())
    }

    /// Every address the bottle was told for `name` whose answer is still (nearly) current:
    /// the candidates the inspecting proxy may fall back to when the one the bottle dialled
    /// does not answer (it never tries an address not answered for that name).
    pub fn addresses(&self, name: &str) -> Vec<IpAddr> {
        let now = Instant::now();
        let inner = self.lock();
        let mut out: Vec<IpAddr> = inner
            .by_addr
            .iter()
            .filter(|(_, names)| names.until.get(name).is_some_and(|t| *t > now))
            .map(|(addr, _)| *addr)
            .collect();
        out.sort();
        out
    }

    /// The name the bottle was last told `addr` for, while the pair is held (also past its
    /// expiry: an audit event naming where a late connect was headed is still true).
    pub fn name_of(&self, addr: IpAddr) -> Option<String> {
        let inner = self.lock();
        inner
            .by_addr
            .get(&addr)
            .map(|names| names.latest.to_string())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the bottle's name checks down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Makes room: drops expired pairs, and everything when that freed nothing.
    fn prune(&mut self, now: Instant) {
        self.by_addr.retain(|_, names| {
            names.until.retain(|_, t| *t > now);
            if !names.until.contains_key(&names.latest) {
                // The latest answer expired but an older one did not: name the address by
                // the longest-lived name left.
                if let Some((key, _)) = names.until.iter().max_by_key(|(_, t)| **t) {
                    names.latest = Arc::clone(key);
                }
            }
            !names.until.is_empty()
        });
        self.pairs = self.by_addr.values().map(|n| n.until.len()).sum();
        if self.pairs >= MAX_PAIRS {
            self.by_addr.clear();
            self.pairs = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("a test address")
    }

    #[test]
    fn pairs_are_per_name_and_expire() {
        let r = Resolved::default();
        let a = ip("198.51.100.7");
        r.record("a.test", a, 60);
        assert!(r.resolved("a.test", a));
        assert!(r.resolved("a.test", ip("::ffff:198.51.100.7")));
        assert!(!r.resolved("b.test", a));
        assert!(!r.resolved("a.test", ip("198.51.100.8")));
        // Expire it by hand.
        for t in r
            .lock()
            .by_addr
            .get_mut(&a)
            .expect("a held")
            .until
            .values_mut()
        {
            *t = Instant::now();
        }
        assert!(!r.resolved("a.test", a), "an expired answer does not count");
        assert_eq!(
            r.name_of(a).as_deref(),
            Some("a.test"),
            "but still names the address"
        );
    }

    #[test]
    fn an_address_is_named_by_its_latest_answer_and_each_pair_is_kept_once() {
        let r = Resolved::default();
        let shared = ip("2001:db8::10");
        r.record("a.test", shared, 60);
        r.record("b.test", shared, 60);
        assert_eq!(r.name_of(shared).as_deref(), Some("b.test"));
        assert!(r.resolved("a.test", shared) && r.resolved("b.test", shared));
        r.record("a.test", shared, 60);
        assert_eq!(r.name_of(shared).as_deref(), Some("a.test"));
        assert_eq!(r.lock().pairs, 2, "a repeated answer is one pair");
        assert_eq!(r.name_of(ip("2001:db8::11")), None);
    }

    #[test]
    fn a_full_table_drops_expired_pairs_first_then_everything() {
        let r = Resolved::default();
        let old = ip("198.51.100.1");
        let live = ip("198.51.100.2");
        r.record("old.test", old, 60);
        r.record("live.test", live, 60);
        r.lock()
            .by_addr
            .get_mut(&old)
            .expect("old held")
            .until
            .values_mut()
            .for_each(|t| {
                *t = Instant::now();
            });
        // Pretend the table is full: the expired pair makes room, the live one stays.
        r.lock().pairs = MAX_PAIRS;
        r.record("new.test", ip("198.51.100.3"), 60);
        assert_eq!(r.name_of(old), None);
        assert!(r.resolved("live.test", live));
        assert!(r.resolved("new.test", ip("198.51.100.3")));
        assert_eq!(r.lock().pairs, 2);

        // Full of live pairs: everything goes, the new pair is kept.
        let r = Resolved::default();
        let base = u128::from(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0));
        for i in 0..MAX_PAIRS {
            let addr = IpAddr::V6((base + i as u128).into());
            r.record("many.test", addr, 60);
        }
        assert_eq!(r.lock().pairs, MAX_PAIRS);
        r.record("last.test", live, 60);
        assert_eq!(r.lock().pairs, 1);
        assert!(r.resolved("last.test", live));
    }
}
