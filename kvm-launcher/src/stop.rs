//! Stop requests for a running VM: a process-wide pipe whose bytes are signal numbers.
//! [`StopSignals::install`] routes signals (SIGINT, SIGTERM) there with an async-signal-
//! safe handler that only writes one byte; [`crate::Vm::wait`] polls the read end. The
//! pipe is created once and never closed, so a handler can never write to a reused fd.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end, as the handler sees it (-1 until the pipe exists).
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static PIPE: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();

/// The stop pipe's read end; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct StopSignals {
    read: BorrowedFd<'static>,
}

impl StopSignals {
    /// Makes each of `signals` a stop request (replacing its previous disposition) and
    /// returns the pipe. Safe to call more than once.
    pub fn install(signals: &[libc::c_int]) -> io::Result<Self> {
        let this = Self::pipe()?;
        for &sig in signals {
            // SAFETY: an all-zero sigaction is a valid value to fill in; every field that
            // matters is set below.
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            // SAFETY: `sa.sa_mask` is a valid sigset_t to initialise; sigaction(2) gets a
            // fully initialised struct and a handler that only calls write(2).
            let r = unsafe {
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut())
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(this)
    }

    /// The pipe without any signal routed to it (stop requests come from [`Self::request`]).
    pub fn pipe() -> io::Result<Self> {
        if let Some((read, _)) = PIPE.get() {
            return Ok(Self { read: read.as_fd() });
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`, which has room for them.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are new and owned by nobody else.
        let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A racing caller may have won: its pipe stays, ours is dropped.
        let (read, write) = PIPE.get_or_init(|| pair);
        WRITE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        Ok(Self { read: read.as_fd() })
    }

    /// Asks for a stop as if signal `sig` had arrived.
    pub fn request(&self, sig: libc::c_int) {
        on_signal(sig);
    }

    /// The read end: readable while a request is pending; each byte is a signal number.
    pub fn fd(&self) -> BorrowedFd<'static> {
        self.read
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; `byte` lives across the call; errno is saved
    // and restored so the interrupted code does not see ours. A full pipe (EAGAIN) only
    // drops a duplicate request.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}
