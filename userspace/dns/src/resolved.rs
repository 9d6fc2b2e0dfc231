//! Which names this bottle resolved to which addresses, for the inspecting proxy: a flow
//! whose SNI names `api.example.test` must go to an address the bottle got in an answer
//! for `api.example.test` (so an allowed name cannot be used to reach an address that was
//! only allowed for another name, or to reach a static-CIDR address under a name).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Past this many (name, address) pairs the oldest half is dropped: a bottle resolving
/// endlessly many names must not grow the agent without bound. A dropped pair only makes
/// a later flow to it fail closed (the bottle can resolve again).
const MAX_PAIRS: usize = 65_536;

/// Kept this long after the answer's TTL ran out: a client may open a connection a little
/// after its cached answer expired; the kernel's own learned entry still governs whether
/// the connect was allowed at all.
const GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Resolved {
    pairs: Mutex<HashMap<(String, IpAddr), Instant>>,
}

impl Resolved {
    /// Records that `name` (normalised: lowercase, no trailing dot) resolved to `addr`
    /// for `ttl` seconds.
    pub fn record(&self, name: &str, addr: IpAddr, ttl: u32) {
        let until = Instant::now() + Duration::from_secs(u64::from(ttl)) + GRACE;
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        if pairs.len() >= MAX_PAIRS {
            let now = Instant::now();
            pairs.retain(|_, t| *t > now);
            if pairs.len() >= MAX_PAIRS {
                pairs.clear();
            }
        }
        let e = pairs.entry((name.to_owned(), addr)).or_insert(until);
        *e = (*e).max(until);
    }

    /// Whether the bottle was told `addr` for `name` and that answer is still (nearly)
    /// current. IPv4-mapped addresses count as their IPv4 address.
    pub fn resolved(&self, name: &str, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        pairs
            .get(&(name.to_owned(), addr))
            .is_some_and(|t| *t > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_per_name_and_expire() {
        let r = Resolved::default();
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        r.record("a.test", a, 60);
        assert!(r.resolved("a.test", a));
        assert!(r.resolved("a.test", "::ffff:198.51.100.7".parse().unwrap()));
        assert!(!r.resolved("b.test", a));
        assert!(!r.resolved("a.test", "198.51.100.8".parse().unwrap()));
        let r = Resolved::default();
        r.pairs
            .lock()
            .unwrap()
            .insert(("old.test".into(), a), Instant::now());
        assert!(
            !r.resolved("old.test", a),
            "an expired answer does not count"
        );
    }
}
