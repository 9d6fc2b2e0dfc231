//! The VM's life after [`crate::launch`]: one poll loop over QEMU's pidfd, the QMP socket
//! and the stop pipe, until QEMU is gone. A stop request asks the guest to power off
//! (`system_powerdown`, the ACPI power button) and SIGKILLs QEMU when the grace period
//! ends; a second request kills at once. The end is mapped to cork's exit status.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use crate::launch::{LaunchError, Vm};

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest shut down (power-off, or a reboot, which `-no-reboot` turns into the
    /// end). `reason` is QEMU's SHUTDOWN event reason ("guest-shutdown", "guest-reset";
    /// "unknown" when QEMU exited cleanly before QMP said).
    Guest { reason: String },
    /// cork was asked to stop by `signal`; `graceful` when the guest powered off within
    /// the grace period, otherwise QEMU was killed.
    Stopped { signal: i32, graceful: bool },
    /// QEMU died of a signal cork did not send (the OOM killer, an operator).
    Killed { signal: i32 },
    /// QEMU exited with an error of its own (bad argument, unreadable kernel, ...): its
    /// message is on stderr.
    Failed { status: i32 },
}

impl VmExit {
    /// cork's exit status: 0 when the guest shut down, 128+N for signal N (the one cork
    /// got, or the one that killed QEMU), 125 when QEMU itself failed.
    pub fn code(&self) -> i32 {
        match self {
            VmExit::Guest { .. } => 0,
            VmExit::Stopped { signal, .. } | VmExit::Killed { signal } => 128 + signal,
            VmExit::Failed { .. } => 125,
        }
    }
}

impl Vm {
    /// Waits until QEMU is gone. `stop` is the stop pipe (see [`crate::StopSignals`]):
    /// readable means "stop", each byte the signal number.
    pub fn wait(
        mut self,
        mut stop: Option<BorrowedFd<'_>>,
        grace: Duration,
    ) -> Result<VmExit, LaunchError> {
        let pid = self.pid();
        let err = |op| move |source| LaunchError::Wait { pid, op, source };
        let mut stopping: Option<(i32, Instant)> = None;
        let mut killed = false;
        loop {
            let timeout = match stopping {
                Some((_, deadline)) if !killed => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    i32::try_from(left.as_millis()).unwrap_or(i32::MAX)
                }
                _ => -1,
            };
            let mut fds = vec![pollfd(self.pidfd.as_fd())];
            let qmp_at = (!self.qmp.closed()).then(|| {
                fds.push(pollfd(self.qmp.socket().as_fd()));
                fds.len() - 1
            });
            let stop_at = stop.map(|s| {
                fds.push(pollfd(s));
                fds.len() - 1
            });
            // SAFETY: `fds` is a valid array of pollfd structs for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue; // a stop signal: its byte is in the pipe
                }
                return Err(err("poll")(e));
            }
            let ready = |i: Option<usize>| i.is_some_and(|i| fds[i].revents != 0);
            if ready(qmp_at) {
                self.qmp.on_readable();
            }
            if let (true, Some(s)) = (ready(stop_at), stop) {
                let Some(signals) = drain(s) else {
                    stop = None; // closed: poll it no more (it would stay readable)
                    continue;
                };
                for sig in signals {
                    match stopping {
                        None => {
                            stopping = Some((sig, Instant::now() + grace));
                            self.qmp.request_powerdown();
                        }
                        Some(_) if !killed => {
                            // Asked twice: do not wait for the guest.
                            let _ = self.child.kill();
                            killed = true;
                        }
                        Some(_) => {}
                    }
                }
            }
            if fds[0].revents != 0 {
                let status = self.child.wait().map_err(err("waitpid"))?;
                self.reaped = true;
                // QEMU is gone: its parent thread may end now.
                drop(self.parent.take());
                // The SHUTDOWN event was written before QEMU exited: read what is left.
                self.qmp.on_readable();
                return Ok(match (stopping, status.signal(), status.code()) {
                    (Some((signal, _)), _, _) => VmExit::Stopped {
                        signal,
                        graceful: !killed && status.success(),
                    },
                    (None, Some(signal), _) => VmExit::Killed { signal },
                    (None, None, Some(0)) => VmExit::Guest {
                        reason: self
                            .qmp
                            .shutdown_reason
                            .clone()
                            .unwrap_or_else(|| "unknown".to_owned()),
                    },
                    (None, None, code) => VmExit::Failed {
                        status: code.unwrap_or(-1),
                    },
                });
            }
            if n == 0 && stopping.is_some() && !killed {
                // The grace period is over.
                let _ = self.child.kill();
                killed = true;
            }
        }
    }
}

fn pollfd(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Reads the pending request bytes: one read, which poll said will not block (so a
/// blocking stop fd works too); bytes left over keep the fd readable for the next round.
/// `None` at end of file: every writer is gone and no request can come any more.
fn drain(fd: BorrowedFd<'_>) -> Option<Vec<i32>> {
    let mut buf = [0u8; 64];
    // SAFETY: reads into `buf`, which is valid for its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        0 => None,
        n if n < 0 => Some(Vec::new()),
        n => Some(buf[..n as usize].iter().map(|&b| i32::from(b)).collect()),
    }
}

#[cfg(test)]
mod tests;
