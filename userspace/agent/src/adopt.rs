//! [`BottleRuntime::adopt`]: a daemon that was killed and started again takes its cgroup
//! bottles back. What the kernel holds is the truth; the saved state only says what to
//! look for:
//!
//! 1. the id is claimed again (a live agent holding it means the bottle is not ours) and
//!    marked with the key, so `cork clean` sees the bottle as alive;
//! 2. the manifest of the generation in force compiles, the DNS proxy and the inspecting
//!    proxy bind exactly the ports the programs redirect to (load-time constants), and
//!    the CA the bottle's processes trust is loaded again;
//! 3. the pinned maps and links are opened ([`cork_bpf::Enforcement::adopt`]) and read back
//!    against the plan, in the slot of the saved generation, learned entries set aside;
//! 4. the services start again: the audit reader reads the ring from where the last one
//!    stopped (events written meanwhile are still there), the proxies serve.
//!
//! Anything failing leaves the bottle as it is — every program attached, default deny,
//! its processes alive — and returns a [`FencedBottle`] that says why and can still be torn
//! down. Nothing here ever detaches a program of a bottle it could not verify.
//!
//! What is not carried: the DNS learner's record of which name taught each learned
//! address. The addresses stay in the kernel (valid until their TTL), but a later policy
//! update carries none of them over.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cork_audit::AuditSink;
use cork_bpf::{AttachTarget, Enforcement};
use cork_dns::BoundDnsProxy;
use cork_inspect::ca::BottleCa;
use cork_policy::{LivePolicy, Policy};

use crate::bottle::{Bottle, TeardownProblem};
use crate::cgroup::{self, BottleCgroup};
use crate::key::{BottleKey, IdLease, KeyError};
use crate::mounts::{self, MountError};
use crate::runtime::{BottleRuntime, Fence, Parts, RuntimeError};
use crate::upstream;
use crate::web::{self, WebSetup};

/// What a bottle's runtime knows that a restarted daemon needs (kept in the runtime).
#[derive(Clone)]
pub(crate) struct RestartFacts {
    pub dns_port: u16,
    pub proxy_port: u16,
    pub ca: Option<Arc<BottleCa>>,
}

/// The bottle CA, as the daemon's state keeps it (root only: the key is the CA's).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for SavedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedCa").finish_non_exhaustive()
    }
}

/// What to save for a bottle so that a restarted daemon can take it back.
#[derive(Debug, Clone)]
pub struct RestartRecord {
    pub key: String,
    pub dns_port: u16,
    pub proxy_port: u16,
    pub ca: Option<SavedCa>,
}

/// What a restarted daemon knows of one of its bottles.
#[derive(Debug, Clone, Copy)]
pub struct Saved<'a> {
    pub key: &'a str,
    /// The manifest of the generation in force, and its origin.
    pub manifest: &'a str,
    pub origin: &'a str,
    pub generation: u64,
    pub dns_port: u16,
    pub proxy_port: u16,
    pub ca: Option<&'a SavedCa>,
    /// The restarted daemon's registry for `supervise` holds.
    pub approvals: Option<&'a Arc<cork_inspect::approvals::Approvals>>,
}

/// Why a bottle could not be taken back (it stays fenced).
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("the saved key {0:?} is not a bottle key with an id")]
    Key(String),
    #[error("claiming its id again")]
    Id(#[source] KeyError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("its cgroup {0} is gone")]
    CgroupGone(PathBuf),
    #[error("its manifest no longer compiles")]
    Manifest(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "its manifest allows names but no DNS upstream is known (set [dns] upstream or \
         list a nameserver in /etc/resolv.conf)"
    )]
    NoUpstream,
    #[error("its DNS proxy port {port} cannot be bound again")]
    DnsPort {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("its saved state holds no CA for its inspecting proxy")]
    NoCa,
    #[error("its inspecting proxy (port {port}) cannot be set up again")]
    Web {
        port: u16,
        #[source]
        source: web::WebError,
    },
    #[error("its kernel state cannot be re-verified")]
    Kernel(#[source] cork_bpf::BpfError),
    #[error("starting its services")]
    Start(#[source] Box<RuntimeError>),
}

/// The outcome of one adoption.
pub enum Adoption {
    /// Verified and serving, as before the restart.
    Serving(Box<BottleRuntime>),
    /// Left fenced: programs attached, services down.
    Fenced(FencedBottle),
    /// Neither its cgroup nor its pins exist any more (`cork clean` removed them):
    /// nothing to fence, nothing to serve.
    Gone,
    /// A live agent holds its id: not this daemon's to take.
    HeldElsewhere,
}

/// A bottle a restarted daemon could not verify: its programs hold (default deny), its
/// services are down. It can only be torn down.
pub struct FencedBottle {
    key: Option<BottleKey>,
    why: AdoptError,
    /// Holds the id, so no new bottle takes it while this one's pins are named after it.
    _lease: Option<IdLease>,
}

impl FencedBottle {
    fn new(key: Option<BottleKey>, why: AdoptError, lease: Option<IdLease>) -> Self {
        FencedBottle {
            key,
            why,
            _lease: lease,
        }
    }

    pub fn key(&self) -> Option<&BottleKey> {
        self.key.as_ref()
    }

    pub fn why(&self) -> &AdoptError {
        &self.why
    }

    /// Kills what runs in the bottle (while still fenced), then removes its programs,
    /// pins and CA bundle; keeps the pins when the processes could not be killed.
    pub fn teardown(self) -> Vec<TeardownProblem> {
        let Some(key) = &self.key else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        let cgroup_root = match mounts::cgroup2_root() {
            Ok(root) => root,
            Err(e) => return vec![TeardownProblem::Mount(e)],
        };
        let path = key.cgroup_path(&cgroup_root);
        let sealed = cgroup::kill_all(&path)
            .map_err(TeardownProblem::Cgroup)
            .and_then(
                |()| match cork_bpf::seal::seal_registered(Path::new(mounts::BPFFS), &path) {
                    Err(e) => crate::bottle::seal_problem(e, &mut problems),
                    Ok(_) => Ok(()),
                },
            )
            .and_then(|()| cgroup::remove_emptied(&path).map_err(TeardownProblem::Cgroup));
        if let Err(e) = sealed {
            problems.push(e);
            problems.push(TeardownProblem::LeftFenced {
                key: key.to_string(),
            });
            return problems;
        }
        // Out of the shared program set first, while the pins still reserve the id.
        if let Some(id) = key.id() {
            problems.extend(
                cork_bpf::shared::forget_bottle(Path::new(mounts::BPFFS), id.get())
                    .into_iter()
                    .map(|p| {
                        TeardownProblem::Bpf(cork_bpf::TeardownError::Shared {
                            what: "taking the bottle out of the shared program set",
                            source: std::io::Error::other(p),
                        })
                    }),
            );
        }
        let pins = key.pin_dir(Path::new(mounts::BPFFS));
        problems.extend(
            cork_bpf::remove_pin_dir(&pins)
                .into_iter()
                .map(TeardownProblem::Bpf),
        );
        let _ = std::fs::remove_dir_all(key.run_dir());
        problems
    }
}

/// Everything of an adopted bottle that can fail before anything is taken over.
struct Ready {
    policy: Arc<Policy>,
    upstreams: Vec<std::net::SocketAddr>,
    dns: BoundDnsProxy,
    web: Option<WebSetup>,
    enforcement: Enforcement,
    cgroup: PathBuf,
}

impl BottleRuntime {
    /// Takes back the bottle `saved` describes (see the module docs), serving on
    /// `runtime`; writes an `adopted` lifecycle event when it serves again.
    pub fn adopt(
        saved: &Saved<'_>,
        sink: Arc<Mutex<AuditSink>>,
        runtime: &tokio::runtime::Handle,
    ) -> Adoption {
        let Some(key) = BottleKey::parse(saved.key).filter(|k| k.id().is_some()) else {
            return Adoption::Fenced(FencedBottle::new(
                None,
                AdoptError::Key(saved.key.to_owned()),
                None,
            ));
        };
        let id = key.id().map_or(0, |id| id.get());
        let lease = match IdLease::claim(id) {
            Ok(Some(lease)) => lease,
            Ok(None) => return Adoption::HeldElsewhere,
            Err(e) => return Adoption::Fenced(FencedBottle::new(None, AdoptError::Id(e), None)),
        };
        if let Err(e) = lease.mark(&key) {
            tracing::warn!("bottle {key}: marking its id lock for cork clean: {e}");
        }
        let ready = match prepare(&key, saved) {
            Ok(Some(ready)) => ready,
            Ok(None) => return Adoption::Gone,
            Err(why) => return Adoption::Fenced(FencedBottle::new(Some(key), why, Some(lease))),
        };
        let bottle = Bottle::adopt(&key, BottleCgroup::adopt(&ready.cgroup), ready.enforcement);
        let mut this = Self::assemble(
            Parts {
                policy: ready.policy.clone(),
                key: key.clone(),
                sink,
                fence: Fence::Cgroup(bottle),
                dns: ready.dns,
                web: ready.web,
                upstreams: ready.upstreams,
                masks: Vec::new(),
                guest: None,
            },
            lease,
        );
        this.live = Arc::new(LivePolicy::resume(ready.policy, saved.generation));
        this.approvals = saved.approvals.cloned();
        let started = this.start(runtime).and_then(|()| this.verify());
        if let Err(e) = started {
            let lease = this.disown();
            let why = AdoptError::Start(Box::new(e));
            return Adoption::Fenced(FencedBottle::new(Some(key), why, lease));
        }
        let detail = format!(
            "bottle {key}: taken back by a restarted daemon at policy generation {}; \
             programs, maps and learned addresses verified; DNS proxy on port {}{}",
            saved.generation,
            saved.dns_port,
            if saved.proxy_port == 0 {
                String::new()
            } else {
                format!(", inspecting proxy on port {}", saved.proxy_port)
            }
        );
        if let Err(e) = this.lifecycle("adopted", detail) {
            tracing::warn!("bottle {key}: writing the adopted event: {e}");
        }
        Adoption::Serving(Box::new(this))
    }

    /// What to save for this bottle so that a restarted daemon can take it back.
    pub fn restart_record(&self) -> RestartRecord {
        RestartRecord {
            key: self.key.to_string(),
            dns_port: self.restart.dns_port,
            proxy_port: self.restart.proxy_port,
            ca: self.restart.ca.as_ref().map(|ca| SavedCa {
                cert_pem: ca.cert_pem().to_owned(),
                key_pem: ca.key_pem(),
            }),
        }
    }

    /// Stops the services and lets go of the bottle without tearing it down (it stays
    /// fenced); hands back the id lease.
    fn disown(mut self) -> Option<IdLease> {
        if let Some(services) = self.services.take() {
            drop(services);
        }
        if let Fence::Cgroup(b) = &mut self.fence {
            b.abandon();
        }
        self.lease.take()
    }
}

/// Steps 2 and 3 of the module docs. `Ok(None)`: nothing of the bottle is left.
fn prepare(key: &BottleKey, saved: &Saved<'_>) -> Result<Option<Ready>, AdoptError> {
    let cgroup = key.cgroup_path(&mounts::cgroup2_root()?);
    let pins = key.pin_dir(&mounts::ensure_bpffs()?);
    if !cgroup.exists() && !pins.exists() {
        return Ok(None);
    }
    if !cgroup.is_dir() {
        return Err(AdoptError::CgroupGone(cgroup));
    }
    let policy = cork_policy::compile(saved.manifest, saved.origin)
        .map_err(|e| AdoptError::Manifest(Box::new(e)))?;
    let policy = Arc::new(policy);
    let upstreams = upstream::upstreams(&policy);
    if upstreams.is_empty() && !policy.domains.is_empty() {
        return Err(AdoptError::NoUpstream);
    }
    let dns = BoundDnsProxy::bind(saved.dns_port).map_err(|source| AdoptError::DnsPort {
        port: saved.dns_port,
        source,
    })?;
    let web = if cork_policy::needs_inspecting_proxy(&policy) {
        let ca = saved.ca.ok_or(AdoptError::NoCa)?;
        let port = saved.proxy_port;
        WebSetup::restore(&policy, key, &ca.cert_pem, &ca.key_pem, port)
            .map_err(|source| AdoptError::Web { port, source })?
    } else {
        None
    };
    let target = AttachTarget::Cgroup(cgroup.clone());
    let enforcement = Enforcement::adopt(&target, &pins).map_err(AdoptError::Kernel)?;
    let slot = (saved.generation % 2) as cork_policy::PolicySlot;
    if let Err(e) = enforcement.verify(&target, policy.plan(), slot) {
        // Not ours to remove: the pins stay, and with them the fence.
        enforcement.abandon();
        return Err(AdoptError::Kernel(e));
    }
    Ok(Some(Ready {
        policy,
        upstreams,
        dns,
        web,
        enforcement,
        cgroup,
    }))
}
