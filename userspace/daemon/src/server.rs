//! `cork daemon`: one per host (an `flock` on [`crate::LOCK_PATH`]; a second daemon is
//! refused, naming the first's pid), listening on the control socket (mode 0600, created
//! fresh: with the lock held, a socket file left there is stale), holding standing
//! bottles as `cork_agent::BottleRuntime`s — each enforced, verified and started exactly
//! as `cork run` does it — and serving [`crate::api`] behind [`crate::gate`].
//!
//! SIGINT/SIGTERM stop it: it stops accepting, then tears every bottle down (processes
//! killed while still enforced, then the programs). A SIGKILLed daemon leaves its bottles
//! fenced; started again on the same state directory it takes them back before serving
//! ([`crate::restore`]), or lists them as fenced, saying why.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use nix::fcntl::{Flock, FlockArg};

use cork_agent::BottleRuntime;
use cork_audit::{AuditHistory, AuditSink};

use crate::api::{ApiError, BottleInfo, ErrorBody, ErrorKind};
use crate::bottle_routes::{body, create, not_found, remove, update};
use crate::gate::{self, Peer};
use crate::restore::{self, Fenced};
use crate::state_dir::StateDir;

/// Largest request body: a manifest (100 000 rules is a few MB).
pub(crate) const MAX_BODY: usize = 32 << 20;

/// Every answer's body: whole JSON, or a stream (`GET /v1/audit`).
pub type Body = BoxBody<Bytes, Infallible>;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another cork daemon holds {lock}{}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning { lock: PathBuf, pid: Option<u32> },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Audit(#[from] cork_audit::SinkError),
    #[error("starting the daemon's runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cork daemon must run as root (it creates cgroups and loads eBPF programs)")]
    NotRoot,
    #[error("opening the state directory")]
    State(#[source] crate::state_dir::StateError),
    #[error("taking back the held requests' registry")]
    Approvals(#[source] cork_agent::approvals::StoreError),
    #[error(transparent)]
    Mounts(#[from] cork_agent::mounts::MountError),
}

pub struct DaemonConfig {
    pub socket: PathBuf,
    pub lock: PathBuf,
    pub audit_log: Option<PathBuf>,
    /// Also writes every audit line here, in another shape (`--ocsf-log`).
    pub audit_mirror: Option<Box<dyn cork_audit::LineMirror>>,
    /// Where each standing bottle's state is kept for a restart ([`crate::state_dir`]).
    pub state_dir: PathBuf,
}

pub(crate) struct Standing {
    pub(crate) runtime: BottleRuntime,
    pub(crate) info: BottleInfo,
    pub(crate) manifest: String,
    /// What `cork exec` requests reuse (see [`crate::exec_route`]).
    pub(crate) exec: Arc<crate::exec_route::ExecCache>,
}

pub(crate) struct State {
    pub(crate) bottles: Mutex<BTreeMap<String, Standing>>,
    /// Bottles a restart could not take back: listed, removable, nothing else.
    pub(crate) fenced: Mutex<BTreeMap<String, Fenced>>,
    pub(crate) state_dir: StateDir,
    pub(crate) sink: Arc<Mutex<AuditSink>>,
    /// What the sink wrote lately, for `GET /v1/audit`.
    pub(crate) history: Arc<AuditHistory>,
    pub(crate) handle: tokio::runtime::Handle,
    /// Every bottle's `supervise` holds, decided through `/v1/approvals`.
    pub(crate) approvals: Arc<cork_agent::approvals::Approvals>,
}

/// Takes the daemon lock, or says who holds it.
fn lock(path: &Path) -> Result<Flock<std::fs::File>, DaemonError> {
    let io = |what| {
        move |source| DaemonError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("opening"))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut held) => {
            held.set_len(0).map_err(io("truncating"))?;
            writeln!(held, "{}", std::process::id()).map_err(io("writing"))?;
            Ok(held)
        }
        Err((_, _)) => Err(DaemonError::AlreadyRunning {
            lock: path.to_owned(),
            pid: std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        }),
    }
}

/// Runs the daemon until SIGINT or SIGTERM. `ready` is called once the socket serves.
pub fn run(cfg: DaemonConfig, ready: impl FnOnce(&Path)) -> Result<(), DaemonError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(DaemonError::NotRoot);
    }
    let _lock = lock(&cfg.lock)?;
    // Under `ip netns exec` the host's cgroup2 and bpffs are reached through the root of
    // the process that started us: found now, before that process can go away.
    cork_agent::mounts::settle()?;
    let state_dir = StateDir::open(&cfg.state_dir).map_err(DaemonError::State)?;
    raise_nofile_limit();
    let history = Arc::new(AuditHistory::default());
    let mut sink = AuditSink::open(cfg.audit_log.as_deref())?.with_history(history.clone());
    if let Some(mirror) = cfg.audit_mirror {
        sink = sink.with_mirror(mirror);
    }
    let sink = Arc::new(Mutex::new(sink));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cork-daemon")
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    // The bottles a killed daemon left come back before anyone can ask for them.
    let (approvals, lost) =
        cork_agent::approvals::Approvals::persistent(Box::new(state_dir.approvals_store()))
            .map_err(DaemonError::Approvals)?;
    let approvals = Arc::new(approvals);
    restore::report_lost_holds(&sink, &lost);
    let restored = restore::adopt_all(&state_dir, &sink, &approvals, rt.handle());
    let bottles = restored
        .serving
        .into_iter()
        .map(|b| {
            let standing = Standing {
                runtime: b.runtime,
                info: b.info,
                manifest: b.manifest,
                exec: Arc::default(),
            };
            (standing.info.name.clone(), standing)
        })
        .collect();
    let fenced = restored
        .fenced
        .into_iter()
        .map(|f| (f.info.name.clone(), f))
        .collect();
    let state = Arc::new(State {
        bottles: Mutex::new(bottles),
        fenced: Mutex::new(fenced),
        state_dir,
        sink,
        history,
        handle: rt.handle().clone(),
        approvals,
    });
    let socket = cfg.socket.clone();
    let served = rt.block_on(serve(state.clone(), &socket, ready));
    // Every bottle goes down while the runtime still runs its services' tasks.
    let bottles = std::mem::take(&mut *state.bottles.lock().unwrap_or_else(|p| p.into_inner()));
    for (name, b) in bottles {
        for p in b.runtime.stop() {
            tracing::error!("bottle {name}: {}", cork_audit::error_chain(&p));
        }
        // Torn down (or left for `cork clean`): nothing for a next daemon to take back.
        if let Err(e) = state.state_dir.remove(&name) {
            tracing::error!("{}", cork_audit::error_chain(&e));
        }
    }
    let _ = std::fs::remove_file(&socket);
    drop(rt);
    served
}

async fn serve(
    state: Arc<State>,
    socket: &Path,
    ready: impl FnOnce(&Path),
) -> Result<(), DaemonError> {
    let io = |what| {
        move |source| DaemonError::Io {
            what,
            path: socket.to_owned(),
            source,
        }
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    // We hold the lock: a socket file here is a dead daemon's.
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing the stale socket")(e)),
    }
    let listener = tokio::net::UnixListener::bind(socket).map_err(io("binding"))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io("restricting"))?;
    ready(socket);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io("installing SIGTERM for"))?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("accept on {}: {e}", socket.display());
                        continue;
                    }
                };
                let peer = stream.peer_cred().map(|c| Peer { uid: c.uid(), pid: c.pid() });
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        let peer = peer.as_ref().ok().copied();
                        async move { Ok::<_, Infallible>(route(state, peer, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    if let Err(e) = conn.await {
                        tracing::debug!("control connection: {e}");
                    }
                });
            }
        }
    }
}

pub(crate) fn json<T: serde::Serialize>(status: u16, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn error(e: ApiError) -> Response<Body> {
    json(e.kind.status(), &ErrorBody { error: e })
}

async fn route(state: Arc<State>, peer: Option<Peer>, req: Request<Incoming>) -> Response<Body> {
    let admitted = peer.ok_or(gate::Refusal::NoPid).and_then(gate::admit);
    if let Err(why) = admitted {
        tracing::warn!("control socket: refused {peer:?}: {why}");
        let mut sink = state.sink.lock().unwrap_or_else(|p| p.into_inner());
        let _ = sink.write(&cork_audit::LifecycleEvent {
            head: cork_audit::EventHead::now("-", "cork", "control_refused"),
            detail: why.to_string(),
        });
        let _ = sink.flush();
        return error(ApiError::new(ErrorKind::Forbidden, why.to_string()));
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let name = path.strip_prefix("/v1/bottles/").map(str::to_owned);
    match (method, path.as_str(), name) {
        (Method::GET, "/v1/bottles", _) => {
            let bottles = state.bottles.lock().unwrap_or_else(|p| p.into_inner());
            let fenced = state.fenced.lock().unwrap_or_else(|p| p.into_inner());
            let mut list: Vec<&BottleInfo> = bottles.values().map(|b| &b.info).collect();
            list.extend(fenced.values().map(|f| &f.info));
            list.sort_by(|a, b| a.name.cmp(&b.name));
            json(200, &list)
        }
        (Method::POST, "/v1/bottles", _) => match body(req).await {
            Ok(bytes) => create(state, &bytes).await,
            Err(e) => error(e),
        },
        (Method::POST, _, Some(name)) if name.ends_with("/exec") => {
            let name = name.trim_end_matches("/exec").to_owned();
            match body(req).await {
                Ok(bytes) => crate::exec_route::exec(state, name, &bytes).await,
                Err(e) => error(e),
            }
        }
        (Method::GET, _, Some(name)) => {
            let bottles = state.bottles.lock().unwrap_or_else(|p| p.into_inner());
            let fenced = state.fenced.lock().unwrap_or_else(|p| p.into_inner());
            match (bottles.get(&name), fenced.get(&name)) {
                (Some(b), _) => json(200, &b.info),
                (None, Some(f)) => json(200, &f.info),
                (None, None) => error(not_found(&name)),
            }
        }
        (Method::DELETE, _, Some(name)) => remove(state, name).await,
        (Method::PUT, _, Some(name)) if !name.contains('/') => match body(req).await {
            Ok(bytes) => update(state, name, &bytes).await,
            Err(e) => error(e),
        },
        (Method::GET, "/v1/approvals", _) => crate::approval_routes::list(&state.approvals),
        (Method::POST, p, _) if p.starts_with("/v1/approvals/") => {
            let id = p.trim_start_matches("/v1/approvals/").to_owned();
            // Admitted above: the peer is known.
            let by = peer.map_or(u32::MAX, |p| p.uid);
            match body(req).await {
                Ok(bytes) => crate::approval_routes::decide(&state.approvals, &id, by, &bytes),
                Err(e) => error(e),
            }
        }
        (Method::GET, "/v1/audit", _) => {
            crate::audit_route::answer(&state.history, req.uri().query()).unwrap_or_else(error)
        }
        (m, p, _) => error(ApiError::new(
            ErrorKind::BadRequest,
            format!("no route {m} {p} (see the README's control API)"),
        )),
    }
}

/// A daemon holds many bottles, each with proxies, DNS sockets, maps and program fds:
/// the soft limit on open files (often 1024) goes up to the hard one. Failing to raise
/// it is logged, not fatal — the daemon still serves, with fewer bottles.
fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!("open files limit raised from {soft} to {hard}"),
            Err(e) => tracing::warn!("raising the open files limit from {soft} to {hard}: {e}"),
        },
        Ok((soft, _)) => tracing::info!("open files limit {soft} (already the hard limit)"),
        Err(e) => tracing::warn!("reading the open files limit: {e}"),
    }
}

pub(crate) fn humantime_now() -> String {
    cork_audit::EventHead::now("-", "cork", "-").ts
}
