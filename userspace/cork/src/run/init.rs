//! cork's init: PID 1 of the bottle's PID namespace, between the agent and the command.
//!
//! The command cannot be PID 1 itself: the kernel delivers to a namespace's init only the
//! signals it has a handler for (SIGNAL_UNKILLABLE), so a shell or a program that never
//! installs one would ignore the SIGTERM and SIGINT cork passes on. And whatever the
//! command orphans is reparented to PID 1, which must reap it. So the agent's child,
//! confined exactly like the command (it runs after every step of child.rs), forks
//! once more: the grandchild returns to the spawn (clone_into.rs) and execs the command;
//! the child stays as the init. It
//! - passes SIGINT, SIGTERM, SIGHUP and SIGQUIT (from cork) on to the command;
//! - reaps every child, and exits with the command's status as soon as the command is
//!   gone (the kernel then kills whatever is left in the namespace, as cork did with the
//!   cgroup before) — a signal death as 128+N, which is what cork reports for it;
//! - on the agent's death (parent-death signal [`PARENT_GONE`]) kills the command, as the
//!   command's own parent-death signal did before the namespace, and stays to reap what
//!   is left until nothing is: the bottle's other processes stay fenced for `cork clean`
//!   instead of dying with the namespace;
//! - is not dumpable: it is a copy of the agent's memory (credentials it holds for the
//!   proxy, the environment before the command's variables were removed), and the
//!   command — root by default — must not read it through ptrace or /proc/1/{mem,environ};
//! - holds no descriptor but 0-2 (the exec-error pipe above all: spawn returns once
//!   every copy of it is closed).
//!
//! Only async-signal-safe system calls: this runs between fork and exec.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The parent-death signal of the init: a signal it handles, unlike SIGKILL, so that the
/// agent's death kills the command but not the namespace.
pub const PARENT_GONE: libc::c_int = libc::SIGUSR1;

/// Passed on to the command.
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The command's pid in the namespace; 0 before the fork and after it was reaped.
static COMMAND: AtomicI32 = AtomicI32::new(0);
/// The agent is gone: stay until every process in the namespace is.
static ORPHANED: AtomicBool = AtomicBool::new(false);

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The signals the init handles, blocked from the child's first step on: one that arrives
/// before the handlers exist waits instead of being ignored (an init ignores signals it
/// has no handler for) or killing the command's process too early.
fn handled() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set on our stack.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED.into_iter().chain([PARENT_GONE]) {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

fn mask(how: libc::c_int) -> io::Result<()> {
    let set = handled();
    // SAFETY: sigprocmask with a valid set and no old-set pointer.
    check(unsafe { libc::sigprocmask(how, &set, std::ptr::null_mut()) })
}

/// First thing in the agent's child: hold the init's signals until it handles them, and
/// have the agent's death announced by [`PARENT_GONE`].
pub fn prepare() -> io::Result<()> {
    mask(libc::SIG_BLOCK)?;
    parent_death_signal()
}

/// Changing the user clears the parent-death signal (commit_creds), so it is set again
/// after the switch.
fn parent_death_signal() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, PARENT_GONE, 0, 0, 0) })
}

extern "C" fn forward(sig: libc::c_int) {
    let pid = COMMAND.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

extern "C" fn parent_gone(_: libc::c_int) {
    ORPHANED.store(true, Ordering::SeqCst);
    forward(libc::SIGKILL);
}

fn handle(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; we set the handler and flags.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: the handlers only touch atomics and call kill(2).
    check(unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) })
}

/// Last step in the agent's child: forks the command's process. Returns in it (which
/// then execs the command); never returns in the init.
pub fn split() -> io::Result<()> {
    // Before the command exists, so that it never sees a dumpable init. The command's
    // process is a copy until exec, which makes it dumpable again.
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) })?;
    parent_death_signal()?;
    // SAFETY: fork in a single-threaded process (the agent forked us single-threaded).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // The command starts with no signal blocked (exec keeps the mask).
        return mask(libc::SIG_UNBLOCK);
    }
    COMMAND.store(pid, Ordering::SeqCst);
    serve()
}

/// The init's life: set up, then reap until the command (or, orphaned, everyone) is gone.
fn serve() -> ! {
    // Nothing here can be reported to the agent any more (the exec-error pipe is about to
    // close): a failure kills the command and the init exits with cork's own status.
    if setup().is_err() {
        forward(libc::SIGKILL);
        // SAFETY: _exit ends the process without running the agent's destructors.
        unsafe { libc::_exit(super::EXIT_CORK_FAILED) };
    }
    let mut code = super::EXIT_CORK_FAILED;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status we own.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if pid < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // ECHILD: nobody is left.
            break;
        }
        if pid != COMMAND.load(Ordering::SeqCst) {
            continue;
        }
        COMMAND.store(0, Ordering::SeqCst);
        code = if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            libc::WEXITSTATUS(status)
        };
        if !ORPHANED.load(Ordering::SeqCst) {
            break;
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(code) }
}

fn setup() -> io::Result<()> {
    // SAFETY: close_range on our own descriptor table.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: prctl with a static NUL-terminated name.
    check(unsafe { libc::prctl(libc::PR_SET_NAME, c"cork-init".as_ptr(), 0, 0, 0) })?;
    for sig in FORWARDED {
        handle(sig, forward)?;
    }
    handle(PARENT_GONE, parent_gone)?;
    mask(libc::SIG_UNBLOCK)
}
