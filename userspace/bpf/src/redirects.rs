//! The kernel's record of connections redirected to the inspecting proxy (`cork_redirects`,
//! written by `sock_ops.bpf.c`): the proxy takes the entry for each connection it accepts,
//! keyed by the connection's peer address, and learns where the bottle was going. Opened
//! from its pin, like the learned tries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;

use aya::maps::{HashMap, Map, MapData};

use super::abi::{cork_redirect_key, cork_redirect_value};
use super::maps::MapError;

/// Pin name of the map (the C variable's name, pinned by name).
pub const REDIRECTS: &str = super::abi::map_names::CORK_REDIRECTS;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// Where a redirected connection was going, as the kernel recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original {
    pub dst: SocketAddr,
    /// The manifest rule that allowed the connect (index into `Policy::rules`).
    pub rule_id: cork_policy::RuleId,
    /// The process that called connect().
    pub pid: u32,
    pub sock_cookie: u64,
}

pub struct RedirectMap {
    map: Mutex<HashMap<MapData, cork_redirect_key, cork_redirect_value>>,
}

impl RedirectMap {
    pub fn open(pin_dir: &Path) -> Result<Self, MapError> {
        let data = MapData::from_pin(pin_dir.join(REDIRECTS)).map_err(|source| MapError::Aya {
            map: REDIRECTS,
            operation: "open pin",
            source,
        })?;
        let map = Map::from_map_data(data)
            .and_then(HashMap::try_from)
            .map_err(|source| MapError::Aya {
                map: REDIRECTS,
                operation: "open",
                source,
            })?;
        Ok(RedirectMap {
            map: Mutex::new(map),
        })
    }

    /// Removes and returns the record for a connection whose client is `peer`. `None`
    /// when this bottle's kernel programs never redirected such a connection: then the
    /// peer is not the bottle (or the entry was evicted) and the connection is refused.
    pub fn take(&self, peer: SocketAddr) -> Option<Original> {
        let key = key_of(peer);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let v = map.get(&key, 0).ok()?;
        let _ = map.remove(&key);
        let dst = match v.family {
            AF_INET => IpAddr::V4(Ipv4Addr::new(v.addr[0], v.addr[1], v.addr[2], v.addr[3])),
            AF_INET6 => IpAddr::V6(Ipv6Addr::from(v.addr)),
            _ => return None,
        };
        Some(Original {
            dst: SocketAddr::new(dst, v.port),
            rule_id: v.rule_id,
            pid: v.pid,
            sock_cookie: v.sock_cookie,
        })
    }
}

/// The key sock_ops wrote for a client at `peer`: IPv4-mapped addresses folded to IPv4.
fn key_of(peer: SocketAddr) -> cork_redirect_key {
    // SAFETY: cork_redirect_key is plain integers; all-zero is a valid value (padding too).
    let mut k: cork_redirect_key = unsafe { std::mem::zeroed() };
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            k.family = AF_INET;
            k.addr[..4].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            k.family = AF_INET6;
            k.addr = v6.octets();
        }
    }
    k.port = peer.port();
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_peers_fold_to_ipv4_keys() {
        let a = key_of("127.0.0.1:4000".parse().unwrap());
        let b = key_of("[::ffff:127.0.0.1]:4000".parse().unwrap());
        assert_eq!(
            (a.family, a.addr, a.port),
            (b.family, b.addr, b.port),
            "an IPv6 socket on a mapped path is published under its IPv4 address"
        );
        let c = key_of("[::1]:4000".parse().unwrap());
        assert_eq!(c.family, AF_INET6);
        assert_eq!(c.addr[15], 1);
    }
}
