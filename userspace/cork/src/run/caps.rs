//! Capabilities a bottled process must not have: each one could undo enforcement
//! (detach programs, change routes or nftables, open raw/packet sockets, escape the
//! cgroup through a new mount, read or trace the agent, load kernel code, open a masked
//! file by its inode).

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
    // open_by_handle_at(2) opens a file by inode number, under any mask; reading by path
    // is what CAP_DAC_OVERRIDE (kept) is for.
    Capability::CAP_DAC_READ_SEARCH,
];

/// Drops [`DROPPED`] from the bounding set and clears the ambient set. Needs CAP_SETPCAP,
/// so it runs before any user switch; CAP_SETPCAP itself goes last.
pub fn drop_bounding() -> Result<(), caps::errors::CapsError> {
    for &cap in DROPPED.iter().filter(|&&c| c != Capability::CAP_SETPCAP) {
        caps::drop(None, CapSet::Bounding, cap)?;
    }
    caps::drop(None, CapSet::Bounding, Capability::CAP_SETPCAP)?;
    caps::clear(None, CapSet::Ambient)
}

/// Drops [`DROPPED`] from the inheritable, effective and permitted sets (a process that
/// stays root keeps the rest of its capabilities). After a switch to a non-root user these
/// sets are already empty and there is nothing to drop.
pub fn drop_remaining() -> Result<(), caps::errors::CapsError> {
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        let have = caps::read(None, set)?;
        for &cap in DROPPED.iter().filter(|c| have.contains(c)) {
            caps::drop(None, set, cap)?;
        }
    }
    Ok(())
}
