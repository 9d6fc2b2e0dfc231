//! [`prepare_tap_sysctls`]: the per-interface sysctls the host end of a guest's tap needs,
//! written in the caller's network namespace (`/proc/sys/net` resolves against the
//! writer's). Call it after creating the tap and before bringing it up: `accept_dad`
//! only matters for the link-local address created at link-up.
//!
//! Global forwarding (and `accept_ra = 2` on uplinks once IPv6 forwarding is on) is the
//! caller's business: it concerns the whole host, not one tap.

use std::path::PathBuf;

/// `(family, key, value)` under `/proc/sys/net/<family>/conf/<tap>/`, in write order.
pub const TAP_SYSCTLS: &[(&str, &str, &str)] = &[
    // The guest gets IPv6 on this link; a tap can be created with IPv6 disabled by default.
    ("ipv6", "disable_ipv6", "0"),
    // The host must never learn routes or addresses from a guest's (rogue) RAs.
    ("ipv6", "accept_ra", "0"),
    ("ipv6", "autoconf", "0"),
    // No DAD on the tap: its link-local is usable at once (the RA socket binds it), and a
    // guest claiming that address cannot knock the router off the link.
    ("ipv6", "accept_dad", "0"),
    // This end is the guest's router: the kernel's neighbour advertisements must carry
    // the Router flag, or a Linux guest deletes its default route on the first NA
    // (RFC 4861 7.2.5). Per-interface forwarding does not forward by itself; packets are
    // forwarded only when `all.forwarding` is on.
    ("ipv6", "forwarding", "1"),
    // A guest must not redirect the host's traffic.
    ("ipv6", "accept_redirects", "0"),
    ("ipv4", "accept_redirects", "0"),
];

/// A sysctl write failed, or the interface name cannot be a path component.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("interface name {name:?} is not a valid Linux interface name")]
    InterfaceName { name: String },
    #[error("set {} = {value} for tap {ifname}", path.display())]
    Write {
        ifname: String,
        path: PathBuf,
        value: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Writes [`TAP_SYSCTLS`] for interface `ifname` in the current network namespace.
pub fn prepare_tap_sysctls(ifname: &str) -> Result<(), SysctlError> {
    if !valid_ifname(ifname) {
        return Err(SysctlError::InterfaceName {
            name: ifname.to_owned(),
        });
    }
    for (family, key, value) in TAP_SYSCTLS {
        let path = PathBuf::from(format!("/proc/sys/net/{family}/conf/{ifname}/{key}"));
        std::fs::write(&path, value).map_err(|source| SysctlError::Write {
            ifname: ifname.to_owned(),
            path,
            value,
            source,
        })?;
    }
    Ok(())
}

/// What the kernel's `dev_valid_name` accepts: 1..16 bytes, no '/', ':' or whitespace,
/// not "." or "..".
pub(crate) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_that_escape_the_path_are_refused() {
        for bad in ["", ".", "..", "../all", "a b", "sixteen-chars-xx"] {
            let err = prepare_tap_sysctls(bad).expect_err("bad name accepted");
            assert!(
                matches!(err, SysctlError::InterfaceName { .. }),
                "{bad:?}: {err}"
            );
        }
        assert!(valid_ifname("ck12ab34t"));
    }
}
