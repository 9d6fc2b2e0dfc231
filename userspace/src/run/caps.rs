//! Capabilities a bottled process must not have: each one could undo enforcement
//! (detach programs, change routes or nftables, open raw/packet sockets, escape the
//! cgroup through a new mount, read or trace the agent, load kernel code).

use caps::{CapSet, Capability};

/// Removed from the bounding, effective, permitted, inheritable and ambient sets, so no
/// exec (setuid-root binaries included) can get them back.
pub const DROPPED: &[Capability] = &[
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_SYS_MODULE,
    Capability::CAP_SYS_RAWIO,
    Capability::CAP_SYS_BOOT,
    Capability::CAP_SYS_TIME,
    Capability::CAP_MAC_ADMIN,
    Capability::CAP_MAC_OVERRIDE,
    Capability::CAP_SYSLOG,
    Capability::CAP_SETPCAP,
];

/// Drops [`DROPPED`] from every set of the calling process. CAP_SETPCAP is needed to
/// shrink the bounding set, so it is dropped from the bounding set last.
pub fn drop_dangerous() -> Result<(), caps::errors::CapsError> {
    for &cap in DROPPED.iter().filter(|&&c| c != Capability::CAP_SETPCAP) {
        caps::drop(None, CapSet::Bounding, cap)?;
    }
    caps::drop(None, CapSet::Bounding, Capability::CAP_SETPCAP)?;
    caps::clear(None, CapSet::Ambient)?;
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        for &cap in DROPPED {
            caps::drop(None, set, cap)?;
        }
    }
    Ok(())
}
