//! The agent's side of the bottle's PID namespace: the next process the agent forks
//! becomes PID 1 of a new namespace, and every later one (the agent's own threads above
//! all) is created in the agent's namespace again.
//!
//! `unshare(CLONE_NEWPID)` does not move the caller; it only changes where the caller's
//! children are created. std's `Command` forks once, so the child it forks for the
//! command is born as the new namespace's PID 1 — cork's init (init.rs) — without cork
//! giving up std's spawn (exec error reporting, environment, stdio). The kernel refuses to
//! create threads while the namespace for children differs from the caller's own
//! (copy_process: CLONE_THREAD needs them equal), so the guard switches back with
//! setns(2) as soon as the child exists.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// While alive, this process's next child is PID 1 of a new PID namespace.
pub struct ChildrenInNewPidNs {
    /// The agent's own namespace, to return to.
    own: File,
}

impl ChildrenInNewPidNs {
    /// Makes the next child PID 1 of a new namespace (needs CAP_SYS_ADMIN).
    pub fn enter() -> io::Result<Self> {
        let own = File::open("/proc/self/ns/pid")?;
        // SAFETY: unshare with a flag only; it changes where children are created.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ChildrenInNewPidNs { own })
    }

    /// Children (and threads) are created in the agent's own namespace again.
    pub fn leave(self) -> io::Result<()> {
        // SAFETY: setns on a namespace descriptor we opened; entering one's own active
        // PID namespace is always allowed to its owner.
        if unsafe { libc::setns(self.own.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
