//! `cork run`: one bottle for one command. Compile the manifest, decide which host
//! secrets the command does not get (variables, files), create the bottle's cgroup,
//! enforce the policy on it (verified), start the command inside it — in a PID namespace
//! of its own — with the variables removed, the files masked and dangerous capabilities
//! dropped, pass on stop signals,
//! wait, kill whatever is left, remove everything, and return the command's exit status.

mod caps;
mod child;
mod clone_into;
mod exec;
mod init;
mod landlock;
mod masks;
mod seccomp;
mod signals;
mod spawn;
mod test_seams;

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use caps::DROPPED as DROPPED_CAPABILITIES;
pub use child::{UserSpec, parse_user};
pub use cork_agent::key::RUN_DIR;
pub use exec::{ExecOptions, exec};

use cork_agent::mounts::MountError;
use cork_agent::secrets;
use cork_agent::{BottleRuntime, RuntimeError};
use cork_audit::{AuditSink, SinkError};

/// Exit status of `cork run` when cork itself fails (as `env`, `docker run` do).
pub const EXIT_CORK_FAILED: i32 = 125;
/// The command exists but could not be executed.
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

pub struct RunOptions {
    pub manifest: PathBuf,
    pub audit_log: Option<PathBuf>,
    pub user: Option<UserSpec>,
    pub command: Vec<OsString>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading manifest {path}")]
    ReadManifest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    // Transparent: the manifest error already names file:line:col; a `{0}` wrapper would
    // print it twice (once itself, once as its own source).
    #[error(transparent)]
    Manifest(#[from] cork_policy::ManifestError),
    #[error("cork run must run as root (it creates cgroups and loads eBPF programs)")]
    NotRoot,
    #[error("no command given: cork run --manifest FILE -- CMD [ARGS...]")]
    NoCommand,
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Bottle(#[from] RuntimeError),
    #[error(transparent)]
    Audit(#[from] SinkError),
    #[error("preparing the command's process")]
    Prepare(#[source] io::Error),
    #[error("starting {command:?} in the bottle")]
    Spawn {
        command: OsString,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Seam(#[from] test_seams::SeamError),
    #[error("holding {env} as a credential: {why}")]
    ProviderCredential { env: String, why: String },
    #[error("building the DLP scanner that judges the command's environment")]
    EnvScanner(#[source] cork_dlp::DlpError),
    #[error("starting the agent's runtime")]
    Runtime(#[source] io::Error),
    #[error("the bottle's cgroup is gone before the command started")]
    NoCgroup,
    #[error("waiting for the command")]
    Wait(#[source] io::Error),
    #[error(transparent)]
    Control(cork_daemon::client::ClientError),
    #[error("the daemon's answer: {why}")]
    DaemonAnswer { why: String },
}

impl RunError {
    /// The exit status `cork run` reports for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                EXIT_NOT_FOUND
            }
            RunError::Spawn { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                EXIT_CANNOT_EXEC
            }
            _ => EXIT_CORK_FAILED,
        }
    }
}

/// The provider keys cork may hold for the command; the harness may point one at a test
/// host.
fn providers(seams: &test_seams::Seams) -> Vec<secrets::providers::Provider> {
    let mut known = secrets::providers::known();
    if let Some((env, host)) = &seams.provider_host {
        for p in known.iter_mut().filter(|p| p.env == env) {
            p.domain = host.clone();
        }
    }
    known
}

/// Runs the command in a fresh bottle and returns the exit status to report.
pub fn run(opts: RunOptions) -> Result<i32, RunError> {
    // The built-in DLP detectors are analysed once per process (~0.1 s), by the first
    // scanner: the one that judges the command's environment below. Done now, on the other
    // core, it overlaps the manifest's compilation, which a large policy makes as long.
    let detectors = std::thread::Builder::new()
        .name("cork-dlp-warm".into())
        .spawn(|| drop(cork_dlp::Scanner::new(&cork_dlp::Config::default())))
        .ok();
    let src = std::fs::read_to_string(&opts.manifest).map_err(|source| RunError::ReadManifest {
        path: opts.manifest.clone(),
        source,
    })?;
    let mut policy = cork_policy::compile(&src, &opts.manifest.display().to_string())?;
    let (program, args) = opts.command.split_first().ok_or(RunError::NoCommand)?;
    let seams = test_seams::from_env()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(RunError::NotRoot);
    }

    for w in &policy.warnings {
        tracing::warn!("{w}");
    }
    if let Some(ask) = policy.domains.iter().find(|d| d.ask) {
        // Nobody to ask: every request an ask rule takes is refused (`ask_without_daemon`).
        tracing::warn!(
            "{}:{}:{}: `[[egress.ask]]` holds requests for an operator, and `cork run` has              none: they are refused; create the bottle with `cork bottle create` under              `cork daemon` to have them approved",
            opts.manifest.display(),
            ask.line,
            ask.col
        );
    }

    // Whatever became of the analysis, `decide` does it itself if it has to.
    if let Some(warm) = detectors {
        let _ = warm.join();
    }
    // What of the host's secrets the command does not get: decided before the bottle
    // exists, so that the `enforced` event can list every mask.
    let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    // cork runs as root, so the command is root unless --user says otherwise.
    let secrets::Decision {
        removals,
        masks,
        credentials,
    } = secrets::decide(
        &policy,
        opts.user.map_or(0, |u| u.uid),
        &vars,
        &providers(&seams),
    )
    .map_err(RunError::EnvScanner)?;
    for c in credentials {
        let env = c.env.clone();
        policy
            .add_credential(c)
            .map_err(|why| RunError::ProviderCredential { env, why })?;
    }
    let policy = Arc::new(policy);

    let sink = Arc::new(Mutex::new(AuditSink::open(opts.audit_log.as_deref())?));
    let mut bottle = BottleRuntime::enforce_hiding(policy.clone(), sink.clone(), masks)?;
    bottle.audit_env_scrub(&removals)?;
    if !seams.active.is_empty() {
        bottle.lifecycle("test_seams", test_seams::announce(&seams))?;
    }
    let manifest = spawn::manifest_for_command(&opts.manifest, bottle.masks(), opts.user);

    let procs = bottle.cgroup_procs().ok_or(RunError::NoCgroup)?;
    let (mut child, channel) = spawn::start(spawn::InBottle {
        procs: &procs,
        masks: bottle.masks(),
        user: opts.user,
        removals: &removals,
        env: bottle.command_env_vars(),
        program,
        args,
        manifest: manifest.as_deref(),
        weaken: seams.weaken,
    })?;

    // From here on the command runs; kernel events wait in the ring buffer until read.
    let auditor = spawn::socket_auditor(&channel, &policy.name, &sink);
    if let Some(delay) = seams.reader_delay {
        std::thread::sleep(delay);
    }
    // One runtime for the agent process; the bottle's services are tasks on it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cork-agent")
        .enable_all()
        .build();
    let started = match &runtime {
        Ok(rt) => bottle.start(rt.handle()).map_err(RunError::from),
        Err(e) => Err(RunError::Runtime(io::Error::new(e.kind(), e.to_string()))),
    };
    if let Err(e) = signals::forward_to(child.id()) {
        tracing::warn!("cannot forward signals to the command: {e}");
    }
    // Without its proxies or audit reader the bottle must not go on: stop the command.
    if started.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(RunError::Wait);

    // The command is done: kill what it left behind while still enforced, then read the
    // last events, then take enforcement down.
    let problems = bottle.stop();
    drop(runtime);
    drop(auditor);
    for p in problems.iter().map(|p| cork_audit::error_chain(p)) {
        tracing::error!("{p}");
    }
    started?;
    let status = status?;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    sink.write(&cork_audit::LifecycleEvent {
        head: cork_audit::EventHead::now(&policy.name, "cork", "finished"),
        detail: format!("command exited with status {code}"),
    })?;
    sink.flush()?;
    Ok(code)
}
