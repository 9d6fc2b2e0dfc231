//! While the bottled command runs, the agent passes on the signals a user or a CI runner
//! sends to stop a job, so the command can exit and the agent can clean up. They go to
//! the agent's child, the init of the bottle's PID namespace (init.rs), which passes them
//! on to the command.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static CHILD: AtomicI32 = AtomicI32::new(0);

const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Installs the forwarding handlers for `child`.
pub fn forward_to(child: u32) -> nix::Result<()> {
    CHILD.store(child as i32, Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &sig in FORWARDED {
        // SAFETY: the handler only reads an atomic and calls kill(2).
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}
