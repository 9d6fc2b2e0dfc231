//! Spawning QEMU: the tap's fd and one end of a QMP socketpair are the only descriptors
//! QEMU inherits (their close-on-exec flag is cleared in the child alone, so no other
//! process this one spawns can get them); QEMU runs in its own session (the terminal's
//! job-control signals are cork's to handle) and dies with cork (`PR_SET_PDEATHSIG`).
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
//! process. So [`launch`] forks from a thread of its own that lives until QEMU has been
//! reaped (or the [`Vm`] is dropped): any caller thread works — a tokio blocking-pool
//! thread that retires after its idle timeout would otherwise take QEMU with it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::argv::{ArgvError, Fds, VmConfig, qemu_args};
use crate::qmp::Qmp;
use crate::tap::Tap;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("QEMU command line")]
    Argv(#[from] ArgvError),
    #[error("create the QMP socketpair")]
    Socketpair {
        #[source]
        source: io::Error,
    },
    #[error("start {}", qemu.display())]
    Spawn {
        qemu: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pidfd_open for QEMU (pid {pid}; needs Linux 5.3+)")]
    Pidfd {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("waiting for QEMU (pid {pid}): {op}")]
    Wait {
        pid: u32,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A running QEMU. Dropping it without [`Vm::wait`] kills QEMU.
#[derive(Debug)]
pub struct Vm {
    pub(crate) child: Child,
    pub(crate) pidfd: OwnedFd,
    pub(crate) qmp: Qmp,
    pub(crate) reaped: bool,
    /// The thread QEMU's death signal is tied to; `None` for stand-ins in tests.
    pub(crate) parent: Option<ParentThread>,
}

/// The thread that forked QEMU, parked until released (then it ends, and with it the
/// death-signal tie: release it only once QEMU is reaped).
#[derive(Debug)]
pub(crate) struct ParentThread {
    release: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ParentThread {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Vm {
    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `qemu` for `cfg` on `tap`, its serial console on this process's stdio.
pub fn launch(qemu: &Path, cfg: &VmConfig, tap: &Tap) -> Result<Vm, LaunchError> {
    let (ours, theirs) = UnixStream::pair().map_err(|source| LaunchError::Socketpair { source })?;
    let fds = Fds {
        tap: tap.raw_fd(),
        qmp: theirs.as_raw_fd(),
    };
    let args = qemu_args(cfg, fds)?;
    let mut cmd = Command::new(qemu);
    cmd.args(&args);
    let parent = std::process::id();
    let inherit = [fds.tap, fds.qmp];
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (setsid, prctl, getppid, fcntl) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // cork died before the death signal was armed: do not start an orphan.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            for fd in inherit {
                keep_across_exec(fd)?;
            }
            Ok(())
        });
    }
    let (child, parent) = spawn_on_parent_thread(cmd).map_err(|source| LaunchError::Spawn {
        qemu: qemu.to_owned(),
        source,
    })?;
    // QEMU holds its own copy now.
    drop(theirs);
    let mut child = child;
    let pid = child.id();
    let started = Qmp::new(ours)
        .map_err(|source| LaunchError::Socketpair { source })
        .and_then(|qmp| {
            let pidfd = pidfd_open(pid).map_err(|source| LaunchError::Pidfd { pid, source })?;
            Ok((qmp, pidfd))
        });
    match started {
        Ok((qmp, pidfd)) => Ok(Vm {
            child,
            pidfd,
            qmp,
            reaped: false,
            parent: Some(parent),
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Spawns `cmd` from a new thread that then waits to be released (see [`ParentThread`]).
fn spawn_on_parent_thread(mut cmd: Command) -> io::Result<(Child, ParentThread)> {
    let (spawned_tx, spawned_rx) = mpsc::channel();
    let (release, hold) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("cork-qemu-parent".into())
        .spawn(move || {
            let spawned = cmd.spawn();
            let ok = spawned.is_ok();
            if spawned_tx.send(spawned).is_ok() && ok {
                // Returns when the sender is dropped: QEMU has been reaped by then.
                let _ = hold.recv();
            }
        })?;
    let mut parent = ParentThread {
        release: Some(release),
        thread: Some(thread),
    };
    match spawned_rx.recv() {
        Ok(Ok(child)) => Ok((child, parent)),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            parent.thread.take();
            Err(io::Error::other("the thread spawning QEMU died"))
        }
    }
}

/// Clears `FD_CLOEXEC` on `fd` (called in the child only).
fn keep_across_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the child inherited, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns (it is
    // close-on-exec by definition).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
