//! `cork exec NAME [--user UID[:GID]] -- CMD`: a command in a daemon's standing bottle,
//! started exactly as `cork run` starts its command (see [`super::spawn`]). The
//! host-secrets decision is `cork run`'s, for this caller's environment and this
//! command's user, made in two halves: the daemon, which holds the bottle's compiled
//! policy and DLP scanner, judges the caller's environment (sent over the root-only
//! control socket, kept by the daemon no longer than the request) and answers which
//! variables go, where the bottle is (its cgroup) and what environment it gives commands;
//! the masks are resolved here, in the mount namespace the command's is made from. Nothing
//! is compiled or scanned in this process: that was nearly all of its time.
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
use cork_daemon::api::ExecPlan;
use cork_policy::{FilesConfig, PathPattern};

use super::{RunError, UserSpec, signals, spawn, test_seams};

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
    let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let plan = crate::control::exec_plan(&opts.socket, &opts.name, vars.clone())
        .map_err(RunError::Control)?;
    let files = files_config(&plan)?;
    let removals = plan.removals;
    let masks = secrets::masks_for(&files, opts.user.map_or(0, |u| u.uid), &vars, &removals);
    let sink = Arc::new(Mutex::new(AuditSink::open(opts.audit_log.as_deref())?));
    cork_agent::runtime::audit_env_scrub(&sink, &plan.name, &removals)?;
    if !seams.active.is_empty() {
        let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
        sink.write(&cork_audit::LifecycleEvent {
            head: cork_audit::EventHead::now(&plan.name, "cork", "test_seams"),
            detail: test_seams::announce(&seams),
        })?;
        sink.flush()?;
    }
    // The daemon keeps the manifest's text; its origin is given to the command only while
    // that file still holds the same text. The daemon says whether it does (one stat once
    // it has read the file); a daemon that does not say leaves the reading to us.
    let origin = std::path::Path::new(&plan.origin);
    let current = plan.origin_current.unwrap_or_else(|| {
        std::fs::read_to_string(origin)
            .is_ok_and(|t| cork_agent::manifest_digest(&t) == plan.manifest_sha256)
    });
    let manifest = (origin.is_absolute() && current)
        .then(|| spawn::manifest_for_command(origin, &masks, opts.user))
        .flatten();
    let procs = PathBuf::from(&plan.cgroup_procs);
    let (mut child, channel) = spawn::start(spawn::InBottle {
        procs: &procs,
        masks: &masks,
        user: opts.user,
        removals: &removals,
        env: &plan.env,
        program,
        args,
        manifest: manifest.as_deref(),
        weaken: seams.weaken,
    })?;
    let auditor = spawn::socket_auditor(&channel, &plan.name, &sink);
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
        head: cork_audit::EventHead::now(&plan.name, "cork", "exec_finished"),
        detail: format!(
            "{program:?} in standing bottle {} exited with status {code} ({} host paths masked)",
            plan.name,
            masks.len()
        ),
    })?;
    sink.flush()?;
    Ok(code)
}

/// The bottle's `[files]`, from the patterns the daemon sends as written (they were
/// validated when the bottle was created).
fn files_config(plan: &ExecPlan) -> Result<FilesConfig, RunError> {
    let parse = |list: &[String]| {
        list.iter()
            .map(|p| PathPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| RunError::DaemonAnswer {
                why: format!("a [files] entry of bottle {}: {why}", plan.name),
            })
    };
    Ok(FilesConfig {
        hide: parse(&plan.files_hide)?,
        allow: parse(&plan.files_allow)?,
    })
}
