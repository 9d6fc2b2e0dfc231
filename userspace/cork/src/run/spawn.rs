//! Starting a command inside a bottle's cgroup — what `cork run` does for its command and
//! `cork exec` for a command in a daemon's standing bottle, the same way: the child is
//! born in the cgroup, with its own PID namespace (cork's init as PID 1) and
//! mount namespace with the masks, drops capabilities, sets no_new_privs, seccomp and
//! Landlock (see [`super::child`]); its environment is the caller's minus the host-secrets
//! removals, plus what the bottle gives every command (CA bundle, placeholders).

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cork_agent::mounts;
use cork_agent::secrets::{Mask, Removal};
use cork_agent::web::CommandEnv;
use cork_audit::AuditSink;

use super::clone_into::{self, Process};
use super::test_seams::Weaken;
use super::{RunError, UserSpec, child, seccomp};

/// A command to start in a bottle.
pub struct InBottle<'a> {
    /// The bottle cgroup's `cgroup.procs`.
    pub procs: &'a Path,
    pub masks: &'a [Mask],
    pub user: Option<UserSpec>,
    /// Variables removed from the caller's environment.
    pub removals: &'a [Removal],
    /// What the bottle sets and removes for every command.
    pub env: &'a CommandEnv,
    pub program: &'a OsString,
    pub args: &'a [OsString],
    /// The manifest's absolute path when the command can read it: `$CORK_MANIFEST` (for
    /// `cork probe`). `None` removes a `CORK_MANIFEST` the caller had.
    pub manifest: Option<&'a Path>,
    /// Test seams that weaken the command's hardening (harness only).
    pub weaken: Weaken,
}

/// Starts the command; returns its init (see [`clone_into`]) and the channel its seccomp
/// listener arrives on. The caller must have no other threads yet (the child's set-up
/// runs between clone and exec).
pub fn start(b: InBottle<'_>) -> Result<(Process, seccomp::ListenerChannel), RunError> {
    let channel = seccomp::ListenerChannel::new().map_err(RunError::Prepare)?;
    let setup = child::ChildSetup::prepare(
        &mounts::mounts()?,
        b.masks,
        b.user,
        channel.child.as_raw_fd(),
        b.weaken,
    )
    .map_err(RunError::Prepare)?;
    // The environment is built before the clone, so the command's /proc/self/environ never
    // held what is removed.
    let mut changes: Vec<(OsString, Option<OsString>)> = Vec::new();
    changes.extend(b.removals.iter().map(|r| (r.name.clone(), None)));
    changes.extend(b.env.remove.iter().map(|n| (n.into(), None)));
    changes.extend(b.env.set.iter().map(|(n, v)| (n.into(), Some(v.into()))));
    changes.push((
        crate::probe::MANIFEST_ENV.into(),
        b.manifest.map(|p| p.as_os_str().to_owned()),
    ));
    let env = clone_into::environment(&changes);
    // The process cloned is PID 1 of the bottle's namespace: cork's init (run/init.rs),
    // which forks the command.
    let cgroup = b.procs.parent().ok_or(RunError::NoCgroup)?;
    let spawned = clone_into::spawn(&clone_into::Spawn {
        cgroup,
        program: b.program,
        args: b.args,
        env: &env,
        setup: &|| setup.apply(),
    });
    let child = spawned.map_err(|source| RunError::Spawn {
        command: b.program.clone(),
        source,
    })?;
    Ok((child, channel))
}

/// The manifest path to give the command as `$CORK_MANIFEST`: `path` made absolute, if the
/// command can read it — not under one of its masks, and readable by its user by the
/// file's mode bits (directory permissions on the way are not checked; `cork probe` says
/// so when reading fails).
pub fn manifest_for_command(
    path: &Path,
    masks: &[Mask],
    user: Option<UserSpec>,
) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let path = std::fs::canonicalize(path).ok()?;
    if masks.iter().any(|m| path.starts_with(&m.path)) {
        return None;
    }
    let meta = std::fs::metadata(&path).ok()?;
    let readable = match user {
        None => true,
        Some(u) if u.uid == 0 => true,
        Some(u) if meta.uid() == u.uid => meta.mode() & 0o400 != 0,
        Some(u) if meta.gid() == u.gid => meta.mode() & 0o040 != 0,
        Some(_) => meta.mode() & 0o004 != 0,
    };
    readable.then_some(path)
}

/// Audits the command's refused sockets. The child sent its seccomp listener before
/// exec, so it is already queued on `channel`.
pub fn socket_auditor(
    channel: &seccomp::ListenerChannel,
    bottle: &str,
    sink: &Arc<Mutex<AuditSink>>,
) -> Option<seccomp::SocketAuditor> {
    match channel.receive() {
        Ok(listener) => Some(seccomp::SocketAuditor::start(
            listener,
            bottle.to_owned(),
            sink.clone(),
        )),
        Err(e) => {
            // Forbidden sockets still fail (ENOSYS without a listener); only their audit
            // is missing, and that is said in the log.
            tracing::error!("socket refusals will not be audited: {e}");
            None
        }
    }
}
