//! What the bottled command's process does between its birth and exec — it is born in
//! the bottle's cgroup, so everything it does is enforced (clone_into.rs) — in this order:
//! hold the init's signals
//! and learn of the agent's death (init.rs), get a private mount namespace with its own
//! /proc — the process is PID 1 of the bottle's new PID namespace (clone_into.rs), so the
//! bottle sees, signals and traces only its own processes — in which every cgroup and
//! bpf filesystem is read-only (root in the bottle could otherwise write another
//! cgroup's `cgroup.procs` to leave, or unlink the link pins that keep enforcement
//! attached) and the host's credential files are masked (masks.rs), switch user, drop
//! capabilities, set no_new_privs, enter a Landlock domain that keeps it from reaching
//! processes outside the bottle (landlock.rs), install the seccomp filter that reports
//! forbidden socket(2) calls to the agent, let no descriptor but 0-2 survive exec, and
//! fork: the new process execs the command, this one stays as the namespace's init.
//!
//! Everything is prepared before fork. The agent is single-threaded when it spawns (the
//! audit thread starts after), so the allocation the caps crate may do here is safe.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};

use super::landlock::Domain;
use super::masks::MaskMounts;
use super::test_seams::Weaken;
use super::{caps, init, seccomp};
use cork_agent::mounts::Mount;
use cork_agent::secrets::Mask;

/// `--user UID[:GID]` resolved to numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSpec {
    pub uid: u32,
    pub gid: u32,
}

pub struct ChildSetup {
    /// Where the child sends its seccomp listener (see run/seccomp.rs).
    listener_channel: RawFd,
    readonly: Vec<CString>,
    masks: MaskMounts,
    landlock: Domain,
    user: Option<UserSpec>,
    /// Test seams (harness only): hardening steps to skip.
    weaken: Weaken,
}

impl ChildSetup {
    pub fn prepare(
        mounts: &[Mount],
        masks: &[Mask],
        user: Option<UserSpec>,
        listener_channel: RawFd,
        weaken: Weaken,
    ) -> io::Result<Self> {
        let readonly = mounts
            .iter()
            // The bpf and cgroup mounts wherever they are, and everything under /sys
            // (tracefs, debugfs, securityfs... root-owned files whose writes few check
            // capabilities for), each read-only in the bottle.
            .filter(|m| {
                matches!(m.fstype.as_str(), "cgroup" | "cgroup2" | "bpf")
                    || m.target.starts_with("/sys")
            })
            .map(|m| CString::new(m.target.as_os_str().as_encoded_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(ChildSetup {
            listener_channel,
            readonly,
            masks: MaskMounts::prepare(masks)?,
            landlock: Domain::prepare()?,
            user,
            weaken,
        })
    }

    /// Runs in the child, born in the bottle's cgroup. Any error aborts the spawn (the
    /// parent sees it). Returns only in the command's process: the child itself stays as
    /// the init.
    pub fn apply(&self) -> io::Result<()> {
        init::prepare()?;
        unshare(CloneFlags::CLONE_NEWNS)?;
        // Stop our changes from propagating back to the host's mount namespace.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )?;
        // A procfs mounted by a process shows that process's PID namespace: this one's.
        // It covers the host's /proc (and what is mounted under it) for good: undoing it
        // takes CAP_SYS_ADMIN, dropped below. Before the masks, so that none is hidden.
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )?;
        // The kernel's settings are the host's (and the network ones this network
        // namespace's), not the bottle's: root in the bottle must not set
        // kernel.core_pattern (a program the host runs on the next crash), forwarding, a
        // sysrq (a host reboot) or a device's attributes. Read-only for good: undoing it
        // takes CAP_SYS_ADMIN, dropped below.
        for path in HOST_SETTINGS {
            readonly_bind(path)?;
        }
        for target in self.readonly.iter().filter(|_| !self.weaken.rw_mounts) {
            mount(
                None::<&str>,
                target.as_c_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | PSEUDO,
                None::<&str>,
            )?;
        }
        self.masks.apply()?;
        let caps_err = |e: ::caps::errors::CapsError| io::Error::other(e.to_string());
        if !self.weaken.keep_caps {
            caps::drop_bounding().map_err(caps_err)?;
        }
        if let Some(u) = self.user {
            setgroups(&[Gid::from_raw(u.gid)])?;
            setgid(Gid::from_raw(u.gid))?;
            setuid(Uid::from_raw(u.uid))?;
        }
        if !self.weaken.keep_caps {
            caps::drop_remaining().map_err(caps_err)?;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.landlock.apply()?;
        if !self.weaken.no_seccomp {
            seccomp::install_in_child(self.listener_channel)?;
        }
        close_inherited_fds()?;
        init::split()
    }
}

/// What root in a bottle could otherwise change for the whole host through files alone,
/// in the bottle's own procfs (not mount points: each is bound onto itself first). /sys
/// and every mount under it are remounted read-only in place with the cgroup and bpf
/// mounts (binding /sys onto itself would leave the writable mounts below, out of reach
/// but still listed).
const HOST_SETTINGS: &[&str] = &["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"];

/// A bind mount takes its flags from the remount alone (mount(2)): pseudo file systems
/// keep no set-id programs, devices or executables.
const PSEUDO: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Binds `path` onto itself (with what is mounted under it) and makes that bind read-only;
/// a path this kernel does not have is skipped.
fn readonly_bind(path: &str) -> io::Result<()> {
    if !std::path::Path::new(path).exists() {
        return Ok(());
    }
    mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | PSEUDO,
        None::<&str>,
    )?;
    Ok(())
}

/// Marks every descriptor above stderr close-on-exec. A socket created outside the bottle
/// belongs to the cgroup it was created in (the kernel binds a socket to its creator's
/// cgroup), so none of the bottle's programs would judge it: CMD must not inherit one.
/// CLOEXEC rather than close, so the exec-error pipe still works until exec.
fn close_inherited_fds() -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags on this process's descriptors.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Parses `UID[:GID]` or `NAME[:GROUP]`; a missing group is the user's primary group
/// (or the same number for a numeric uid without a passwd entry).
pub fn parse_user(spec: &str) -> Result<UserSpec, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if u.is_empty() {
        return Err(format!("--user {spec:?}: empty user"));
    }
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => {
            let primary = nix::unistd::User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|p| p.gid.as_raw());
            (uid, primary.unwrap_or(uid))
        }
        Err(_) => match nix::unistd::User::from_name(u) {
            Ok(Some(p)) => (p.uid.as_raw(), p.gid.as_raw()),
            _ => return Err(format!("--user {spec:?}: no such user {u:?}")),
        },
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match nix::unistd::Group::from_name(g) {
                Ok(Some(gr)) => gr.gid.as_raw(),
                _ => return Err(format!("--user {spec:?}: no such group {g:?}")),
            },
        },
    };
    Ok(UserSpec { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_user_and_group() {
        assert_eq!(parse_user("1234:99"), Ok(UserSpec { uid: 1234, gid: 99 }));
        assert_eq!(parse_user("0").map(|u| u.uid), Ok(0));
    }

    #[test]
    fn bad_user_is_named() {
        let e = parse_user("no-such-user-cork").unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        assert!(parse_user(":5").unwrap_err().contains("empty user"));
    }
}
