//! `cork exec NAME [--user UID[:GID]] -- CMD`: a command in a daemon's standing bottle,
//! started exactly as `cork run` starts its command (see [`super::spawn`]). The daemon
//! says where the bottle is (its cgroup), what its manifest is and what environment it
//! gives commands; the host-secrets decision is made here, for this caller's environment
//! and this command's user, as `cork run` makes it.
//!
//! One difference from `cork run`: provider keys found in the caller's environment cannot
//! join a standing bottle's policy (it was fixed at `bottle create`), so they are removed
//! without a placeholder. Exit status: CMD's, or 125/126/127 as for `cork run`.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cork_agent::secrets;
use cork_audit::AuditSink;

use super::{RunError, UserSpec, providers, signals, spawn, test_seams};

pub struct ExecOptions {
    pub socket: PathBuf,
    pub name: String,
    pub audit_log: Option<PathBuf>,
    pub user: Option<UserSpec>,
    pub command: Vec<OsString>,
}

/// Runs the command in the standing bottle and returns the exit status to report.
pub fn exec(opts: ExecOptions) -> Result<i32, RunError> {
    let (program, args) = opts.command.split_first().ok_or(RunError::NoCommand)?;
    let seams = test_seams::from_env()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(RunError::NotRoot);
    }
    let info = crate::control::exec_info(&opts.socket, &opts.name).map_err(RunError::Control)?;
    let policy = cork_policy::compile(&info.manifest, &info.origin)?;
    let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let decision = secrets::decide(
        &policy,
        opts.user.map_or(0, |u| u.uid),
        &vars,
        &providers(&seams),
    )
    .map_err(RunError::EnvScanner)?;
    let mut removals = decision.removals;
    for r in &mut removals {
        r.swapped_on = None;
    }
    let sink = Arc::new(Mutex::new(AuditSink::open(opts.audit_log.as_deref())?));
    cork_agent::runtime::audit_env_scrub(&sink, &policy.name, &removals)?;
    if !seams.active.is_empty() {
        let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
        sink.write(&cork_audit::LifecycleEvent {
            head: cork_audit::EventHead::now(&policy.name, "cork", "test_seams"),
            detail: test_seams::announce(&seams),
        })?;
        sink.flush()?;
    }
    // The daemon keeps the manifest's text; its origin is given to the command only while
    // that file still holds the same text.
    let origin = std::path::Path::new(&info.origin);
    let manifest = (origin.is_absolute()
        && std::fs::read_to_string(origin).is_ok_and(|t| t == info.manifest))
    .then(|| spawn::manifest_for_command(origin, &decision.masks, opts.user))
    .flatten();
    let procs = PathBuf::from(&info.cgroup_procs);
    let (mut child, channel) = spawn::start(spawn::InBottle {
        procs: &procs,
        masks: &decision.masks,
        user: opts.user,
        removals: &removals,
        env: &info.env,
        program,
        args,
        manifest: manifest.as_deref(),
        weaken: seams.weaken,
    })?;
    let auditor = spawn::socket_auditor(&channel, &policy.name, &sink);
    if let Err(e) = signals::forward_to(child.id()) {
        tracing::warn!("cannot forward signals to the command: {e}");
    }
    let status = child.wait().map_err(RunError::Wait)?;
    drop(auditor);
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    sink.write(&cork_audit::LifecycleEvent {
        head: cork_audit::EventHead::now(&policy.name, "cork", "exec_finished"),
        detail: format!(
            "{program:?} in standing bottle {} exited with status {code} ({} host paths masked)",
            info.name,
            decision.masks.len()
        ),
    })?;
    sink.flush()?;
    Ok(code)
}
