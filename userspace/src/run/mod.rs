//! `cork run`: one bottle for one command. Compile the manifest, create the bottle's
//! cgroup, enforce the policy on it (verified), start the command inside it with
//! dangerous capabilities dropped, pass on stop signals, wait, kill whatever is left,
//! remove everything, and return the command's exit status.

mod bottle;
mod caps;
mod child;
mod seccomp;
mod signals;
mod test_seams;
mod upstream;
mod web;

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use bottle::{Bottle, BottleError};
pub use caps::DROPPED as DROPPED_CAPABILITIES;
pub use child::{UserSpec, parse_user};
pub use web::RUN_DIR;

use crate::audit::{self, AuditSink, Enrichment, LifecycleEvent, SinkError};
use crate::bpf::events::EventReader;
use crate::bpf::learned::MapLearner;
use crate::bpf::{LoadConstants, MapError};
use crate::dns::{BoundProxy, ProxyConfig};
use crate::mounts::{self, MountError};

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
    #[error("{0}")]
    Manifest(#[from] cork_policy::ManifestError),
    #[error("cork run must run as root (it creates cgroups and loads eBPF programs)")]
    NotRoot,
    #[error("no command given: cork run --manifest FILE -- CMD [ARGS...]")]
    NoCommand,
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("setting up bottle {key}")]
    Bottle {
        key: String,
        #[source]
        source: Box<BottleError>,
    },
    #[error(transparent)]
    Audit(#[from] SinkError),
    #[error("starting the audit reader")]
    Events(#[from] MapError),
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
    #[error(
        "the manifest allows names but no DNS upstream is known: set [dns] upstream or list a \
         nameserver in /etc/resolv.conf"
    )]
    NoUpstream,
    #[error("binding the bottle's DNS proxy on 127.0.0.1 and ::1")]
    DnsBind(#[source] io::Error),
    #[error("opening the bottle's prefix maps for the DNS proxy")]
    Learner(#[source] MapError),
    #[error("setting up the bottle's inspecting proxy")]
    Web(#[from] web::WebError),
    #[error("waiting for the command")]
    Wait(#[source] io::Error),
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

/// Runs the command in a fresh bottle and returns the exit status to report.
pub fn run(opts: RunOptions) -> Result<i32, RunError> {
    let src = std::fs::read_to_string(&opts.manifest).map_err(|source| RunError::ReadManifest {
        path: opts.manifest.clone(),
        source,
    })?;
    let policy = Arc::new(cork_policy::compile(
        &src,
        &opts.manifest.display().to_string(),
    )?);
    let (program, args) = opts.command.split_first().ok_or(RunError::NoCommand)?;
    let seams = test_seams::from_env()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(RunError::NotRoot);
    }

    let upstreams = upstream::upstreams(&policy);
    if upstreams.is_empty() && !policy.domains.is_empty() {
        return Err(RunError::NoUpstream);
    }
    // Every DNS packet the bottle sends is redirected to this port (127.0.0.1 and ::1).
    let dns = BoundProxy::bind(0).map_err(RunError::DnsBind)?;

    let pid = std::process::id();
    let key = format!("cork-{}-{pid}", policy.name);
    // TCP to inspected ports is redirected to this listener (127.0.0.1 and ::1).
    let web = web::WebSetup::prepare(&policy, &key)?;

    let cgroup_root = mounts::cgroup2_root()?;
    let bpffs = mounts::ensure_bpffs()?;
    let plan = policy.kernel_plan();
    let mut bottle = Bottle::create(
        &key,
        LoadConstants {
            bottle_id: pid,
            dns_port: dns.port(),
            proxy_port: web.as_ref().map_or(0, web::WebSetup::port),
        },
        &cgroup_root,
        &bpffs,
        &plan,
    )
    .map_err(|source| RunError::Bottle {
        key: key.clone(),
        source: Box::new(source),
    })?;

    let mut sink = AuditSink::open(opts.audit_log.as_deref())?;
    sink.write(&lifecycle(
        &policy.name,
        "enforced",
        format!(
            "bottle {key}: cgroup {} enforced, pins in {}",
            cgroup_root.join(&key).display(),
            bottle.enforcement().pin_dir().display()
        ),
    ))?;
    sink.flush()?;
    let sink = Arc::new(Mutex::new(sink));

    let channel = seccomp::ListenerChannel::new().map_err(RunError::Prepare)?;
    let setup = child::ChildSetup::prepare(
        &bottle.cgroup_procs(),
        &mounts::mounts()?,
        opts.user,
        channel.child.as_raw_fd(),
    )
    .map_err(RunError::Prepare)?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(w) = web.as_ref() {
        w.child_env(&mut cmd);
    }
    // SAFETY: the closure only makes syscalls on data prepared before fork; this process
    // has no other threads yet (the audit threads start below), so nothing it needs can be
    // held locked by a thread that does not exist in the child.
    unsafe { cmd.pre_exec(move || setup.apply()) };
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        command: program.clone(),
        source,
    })?;

    // From here on the command runs; kernel events wait in the ring buffer until read.
    // The child sent its seccomp listener before exec, so it is already queued.
    let auditor = match channel.receive() {
        Ok(listener) => Some(seccomp::SocketAuditor::start(
            listener,
            policy.name.clone(),
            sink.clone(),
        )),
        Err(e) => {
            // Forbidden sockets still fail (ENOSYS without a listener); only their audit
            // is missing, and that is said in the log.
            tracing::error!("socket refusals will not be audited: {e}");
            None
        }
    };
    if let Some(delay) = seams.reader_delay {
        std::thread::sleep(delay);
    }
    let names = Arc::default();
    let resolved = Arc::new(crate::dns::Resolved::default());
    let web = match web {
        None => Ok(None),
        Some(w) => w
            .start(
                policy.clone(),
                bottle.enforcement().pin_dir(),
                resolved.clone(),
                sink.clone(),
            )
            .map(Some),
    };
    let learner = MapLearner::open(bottle.enforcement().pin_dir(), plan.clone());
    let dns = match learner {
        Ok(learner) => Ok(dns.start(
            ProxyConfig {
                bottle: policy.name.clone(),
                policy: policy.clone(),
                upstreams,
                upstream_timeout: Duration::from_secs(2),
                resolved,
            },
            Arc::new(learner),
            sink.clone(),
            Arc::clone(&names),
        )),
        Err(e) => Err(RunError::Learner(e)),
    };
    let rules = policy.rules.iter().map(|r| r.id.clone()).collect();
    let reader = EventReader::start(
        bottle.enforcement().maps_object(),
        Enrichment::new(policy.name.clone(), rules, names),
        sink.clone(),
    );
    if let Err(e) = signals::forward_to(child.id()) {
        tracing::warn!("cannot forward signals to the command: {e}");
    }
    // Without its proxies or audit reader the bottle must not go on: stop the command.
    if dns.is_err() || reader.is_err() || web.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(RunError::Wait);
    let dns = dns?;
    let reader = reader?;
    let web = web?;

    // The command is done: kill what it left behind while still enforced, then read the
    // last events, then take enforcement down.
    let problems = bottle.teardown();
    dns.stop();
    if let Some((proxy, bundle)) = web {
        proxy.stop();
        drop(bundle);
    }
    reader.finish();
    drop(auditor);
    for p in &problems {
        tracing::error!("{p}");
    }
    let status = status?;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    sink.write(&lifecycle(
        &policy.name,
        "finished",
        format!("command exited with status {code}"),
    ))?;
    sink.flush()?;
    Ok(code)
}

fn lifecycle(bottle: &str, event: &'static str, detail: String) -> LifecycleEvent {
    LifecycleEvent {
        ts: audit::now_rfc3339(),
        bottle: bottle.to_string(),
        layer: "cork",
        event,
        detail,
    }
}
