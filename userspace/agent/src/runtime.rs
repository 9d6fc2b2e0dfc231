//! [`BottleRuntime`]: everything cork holds for one live bottle — its id lease and key, its
//! cgroup and verified eBPF enforcement, its DNS proxy, its inspecting proxy and its audit
//! reader — with an explicit lifecycle:
//!
//! 1. [`BottleRuntime::enforce`]: everything that can fail before anything runs in the
//!    bottle (listeners bound, CA and bundle made, credentials read, cgroup created,
//!    programs loaded, attached, pinned and read back). The bottle is fenced: default
//!    deny, and its DNS/web redirects lead to listeners that do not answer yet.
//! 2. [`BottleRuntime::start`]: the services start serving — the DNS proxy and the
//!    inspecting proxy as tasks on the caller's tokio runtime (one runtime per agent
//!    process, bottles are tasks).
//!    `cork run` forks its command between 1 and 2, so no service thread exists at fork.
//! 3. [`BottleRuntime::verify`]: reads the kernel state back again at any time.
//! 4. [`BottleRuntime::stop`]: kills whatever still runs in the bottle while it is still
//!    enforced, stops the services, reads the last audit events, then removes the
//!    enforcement — or leaves it pinned (fenced) when the processes cannot be killed.
//!
//! Dropping a runtime without `stop` does the same, logging instead of returning problems.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cork_audit::{AuditSink, EnforcedEvent, EnvScrubEvent, LifecycleEvent, SinkError};
use cork_bpf::LoadConstants;
use cork_bpf::events::EventReader;
use cork_bpf::learned::MapLearner;
use cork_dns::{BoundDnsProxy, DnsProxyConfig, Resolved, RunningDnsProxy};
use cork_inspect::RunningInspectingProxy;
use cork_inspect::setup::CaBundle;
use cork_policy::{LivePolicy, Policy};

use crate::adapters::{KernelLearner, KernelRedirects};
use crate::bottle::{Bottle, BottleError, TeardownProblem};
use crate::kernel_audit::{AuditWriter, Enrichment};
use crate::key::{BottleKey, IdLease, KeyError};
use crate::mounts::{self, MountError};
use crate::secrets::{Mask, Removal};
use crate::upstream;
use crate::vm::{ConntrackRedirects, TapFence};
use crate::web::{self, WebSetup};

/// How long the DNS proxy waits for one upstream attempt.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the manifest allows names but no DNS upstream is known: set [dns] upstream or list a \
         nameserver in /etc/resolv.conf"
    )]
    NoUpstream,
    #[error("allocating a bottle id")]
    Id(#[from] KeyError),
    #[error("binding the bottle's DNS proxy")]
    DnsBind(#[source] std::io::Error),
    #[error("starting the bottle's DNS proxy on the agent's runtime")]
    DnsStart(#[source] std::io::Error),
    #[error("setting up the bottle's inspecting proxy")]
    Web(#[from] web::WebError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("setting up bottle {key}")]
    Bottle {
        key: String,
        #[source]
        source: Box<BottleError>,
    },
    #[error("verifying bottle {key}")]
    Verify {
        key: String,
        #[source]
        source: Box<BottleError>,
    },
    #[error(transparent)]
    Audit(#[from] SinkError),
    #[error("opening the bottle's prefix maps for the DNS proxy")]
    Learner(#[source] cork_bpf::MapError),
    #[error("starting the audit reader")]
    Events(#[source] cork_bpf::MapError),
    #[error("starting the guest's DHCPv4 server and router advertisements")]
    GuestNet(#[source] cork_guestnet::GuestNetError),
    #[error("setting up the VM bottle")]
    Vm(#[source] Box<crate::vm::VmError>),
    #[error("bottle {0} was already started")]
    AlreadyStarted(String),
}

/// Writes one `env_scrubbed` event per removed variable of a command in bottle `bottle`:
/// its name and why, never its value.
pub fn audit_env_scrub(
    sink: &Mutex<AuditSink>,
    bottle: &str,
    removals: &[Removal],
) -> Result<(), SinkError> {
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    for r in removals {
        let variable = r.name.to_string_lossy().into_owned();
        sink.write(&EnvScrubEvent {
            head: cork_audit::EventHead::now(bottle, "cork", "env_scrubbed"),
            detail: match &r.swapped_on {
                None => format!(
                    "{variable} removed from the command's environment: {}",
                    r.why
                ),
                Some(host) => format!(
                    "{variable} removed from the command's environment: {}; it holds a \
                     placeholder the proxy swaps for the real value on {host}",
                    r.why
                ),
            },
            why: r.why.to_string(),
            swapped_on: r.swapped_on.clone(),
            variable,
        })?;
    }
    sink.flush()
}

impl From<crate::vm::VmError> for RuntimeError {
    fn from(e: crate::vm::VmError) -> Self {
        RuntimeError::Vm(Box::new(e))
    }
}

/// The services of a started bottle.
pub(crate) struct Services {
    dns: Option<RunningDnsProxy>,
    /// What the DNS proxy learned, followed by policy updates.
    pub(crate) learner: Option<Arc<MapLearner>>,
    web: Option<(RunningInspectingProxy, CaBundle)>,
    reader: Option<EventReader>,
    /// A VM bottle's DHCPv4 server and router advertisements.
    guestnet: Option<cork_guestnet::RunningGuestNet>,
}

/// Where a bottle's policy is enforced: a cgroup of processes, or a VM's tap.
pub(crate) enum Fence {
    Cgroup(Bottle),
    Tap(TapFence),
}

impl Fence {
    pub(crate) fn enforcement(&mut self) -> Option<&mut cork_bpf::Enforcement> {
        match self {
            Fence::Cgroup(b) => b.enforcement(),
            Fence::Tap(t) => t.enforcement(),
        }
    }

    fn verify(
        &self,
        plan: &cork_policy::KernelPlan,
        slot: cork_policy::PolicySlot,
    ) -> Result<(), BottleError> {
        match self {
            Fence::Cgroup(b) => b.verify(plan, slot),
            Fence::Tap(t) => Ok(t.verify(plan, slot)?),
        }
    }

    fn teardown(&mut self) -> Vec<TeardownProblem> {
        match self {
            Fence::Cgroup(b) => b.teardown(),
            Fence::Tap(t) => t.teardown().into_iter().map(Into::into).collect(),
        }
    }
}

/// What a VM bottle's guest is given without a shared filesystem (QEMU fw_cfg): the
/// bottle CA's certificate to trust, and `NAME=VALUE` lines of credential placeholders.
#[derive(Debug, Clone, Default)]
pub struct GuestFiles {
    pub ca_pem: Option<String>,
    pub env: Vec<(String, String)>,
}

/// A bottle's pieces, for [`BottleRuntime::assemble`].
pub(crate) struct Parts {
    pub policy: Arc<Policy>,
    pub key: BottleKey,
    pub sink: Arc<Mutex<AuditSink>>,
    pub fence: Fence,
    pub dns: BoundDnsProxy,
    pub web: Option<WebSetup>,
    pub upstreams: Vec<std::net::SocketAddr>,
    pub masks: Vec<Mask>,
    pub guest: Option<GuestFiles>,
}

/// One bottle, alive while this value lives.
pub struct BottleRuntime {
    /// `bottle.name` of its manifest (an update cannot change it).
    pub(crate) name: String,
    /// Its policy generations: what the kernel, the DNS proxy, the inspecting proxy and
    /// the audit reader go by.
    pub(crate) live: Arc<LivePolicy>,
    pub(crate) key: BottleKey,
    sink: Arc<Mutex<AuditSink>>,
    pub(crate) fence: Fence,
    /// Bound, not serving yet (until `start`).
    dns: Option<BoundDnsProxy>,
    web: Option<WebSetup>,
    pub(crate) services: Option<Services>,
    pub(crate) upstreams: Vec<std::net::SocketAddr>,
    /// Host paths every command in this bottle sees masked (see [`crate::secrets`]).
    masks: Vec<Mask>,
    /// A VM bottle's CA and placeholders, for the guest.
    guest: Option<GuestFiles>,
    /// What every command in this (cgroup) bottle gets in its environment.
    command_env: web::CommandEnv,
    /// What a restarted daemon needs to take this bottle back (see [`crate::adopt`]).
    pub(crate) restart: crate::adopt::RestartFacts,
    /// Where `supervise` holds wait for an operator (the daemon's registry); `None`
    /// under `cork run`, where `supervise` acts as `block`.
    pub(crate) approvals: Option<Arc<cork_inspect::approvals::Approvals>>,
    /// Held for the bottle's life: the id is ours until this drops (`None` only once a
    /// failed adoption handed it back, see [`crate::adopt`]).
    pub(crate) lease: Option<IdLease>,
}

impl BottleRuntime {
    /// Enforces `policy` on a new bottle: when this returns, the bottle's cgroup exists
    /// with every program attached and verified, and nothing runs in it yet. Writes the
    /// `enforced` lifecycle event to `sink`.
    pub fn enforce(policy: Arc<Policy>, sink: Arc<Mutex<AuditSink>>) -> Result<Self, RuntimeError> {
        Self::enforce_hiding(policy, sink, Vec::new())
    }

    /// [`BottleRuntime::enforce`] for a bottle whose commands get `masks` in their mount
    /// namespace: the `enforced` event lists each of them once, and [`BottleRuntime::masks`]
    /// keeps them for every command started in the bottle.
    pub fn enforce_hiding(
        policy: Arc<Policy>,
        sink: Arc<Mutex<AuditSink>>,
        masks: Vec<Mask>,
    ) -> Result<Self, RuntimeError> {
        let (upstreams, lease, key) = Self::identity(&policy)?;
        // Every DNS packet the bottle sends is redirected to this port (127.0.0.1 and ::1).
        let dns = BoundDnsProxy::bind(0).map_err(RuntimeError::DnsBind)?;
        // TCP to inspected ports is redirected to this listener (127.0.0.1 and ::1).
        let web = WebSetup::prepare(&policy, &key, web::Listen::Loopback)?;

        let cgroup_root = mounts::cgroup2_root()?;
        let bpffs = mounts::ensure_bpffs()?;
        let bottle = Bottle::create(
            &key,
            LoadConstants {
                bottle_id: lease.id().get(),
                dns_port: dns.port(),
                proxy_port: web.as_ref().map_or(0, WebSetup::port),
                guest: None,
            },
            &cgroup_root,
            &bpffs,
            policy.plan(),
        )
        .map_err(|source| RuntimeError::Bottle {
            key: key.to_string(),
            source: Box::new(source),
        })?;
        let this = Self::assemble(
            Parts {
                policy,
                key,
                sink,
                fence: Fence::Cgroup(bottle),
                dns,
                web,
                upstreams,
                masks,
                guest: None,
            },
            lease,
        );
        let event = EnforcedEvent {
            head: cork_audit::EventHead::now(&this.name, "cork", "enforced"),
            detail: format!(
                "bottle {}: cgroup {} enforced, pins in {}, {} host paths masked",
                this.key,
                mounts::for_others(&this.key.cgroup_path(&cgroup_root)).display(),
                mounts::for_others(&this.key.pin_dir(&bpffs)).display(),
                this.masks.len()
            ),
            masked: this.masks.iter().map(Mask::audit).collect(),
        };
        this.write_event(&event)?;
        Ok(this)
    }

    /// What every bottle starts with: its DNS upstreams (a manifest with names needs
    /// one), a host-wide id and the key derived from it.
    pub(crate) fn identity(
        policy: &Policy,
    ) -> Result<(Vec<std::net::SocketAddr>, IdLease, BottleKey), RuntimeError> {
        let upstreams = upstream::upstreams(policy);
        if upstreams.is_empty() && !policy.domains.is_empty() {
            return Err(RuntimeError::NoUpstream);
        }
        let lease = IdLease::allocate()?;
        let key = BottleKey::new(&policy.name, lease.id());
        if let Err(e) = lease.mark(&key) {
            tracing::warn!("bottle {key}: writing its key into its id lock: {e}");
        }
        Ok((upstreams, lease, key))
    }

    pub(crate) fn assemble(parts: Parts, lease: IdLease) -> Self {
        let Parts {
            policy,
            key,
            sink,
            fence,
            dns,
            web,
            upstreams,
            masks,
            guest,
        } = parts;
        let command_env = web.as_ref().map(WebSetup::command_env).unwrap_or_default();
        let restart = crate::adopt::RestartFacts {
            dns_port: dns.port(),
            proxy_port: web.as_ref().map_or(0, WebSetup::port),
            ca: web.as_ref().map(WebSetup::ca),
        };
        BottleRuntime {
            name: policy.name.clone(),
            live: Arc::new(LivePolicy::new(policy)),
            key,
            sink,
            fence,
            command_env,
            dns: Some(dns),
            web,
            services: None,
            upstreams,
            masks,
            guest,
            restart,
            approvals: None,
            lease: Some(lease),
        }
    }

    /// A VM bottle's tap (QEMU gets its fd); `None` for a cgroup bottle or once stopped.
    pub fn tap(&self) -> Option<&cork_kvm::Tap> {
        match &self.fence {
            Fence::Tap(t) => t.tap(),
            Fence::Cgroup(_) => None,
        }
    }

    /// What a VM bottle's guest gets over fw_cfg; `None` for a cgroup bottle.
    pub fn guest_files(&self) -> Option<&GuestFiles> {
        self.guest.as_ref()
    }

    /// The host paths masked for every command in this bottle.
    pub fn masks(&self) -> &[Mask] {
        &self.masks
    }

    /// Writes one `env_scrubbed` event per removed variable: its name and why, never its
    /// value.
    pub fn audit_env_scrub(&self, removals: &[Removal]) -> Result<(), SinkError> {
        audit_env_scrub(&self.sink, &self.name, removals)
    }

    pub fn key(&self) -> &BottleKey {
        &self.key
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.live.current().policy
    }

    pub fn sink(&self) -> &Arc<Mutex<AuditSink>> {
        &self.sink
    }

    /// The bottle cgroup's `cgroup.procs`: a process that writes its pid there is in the
    /// bottle. `None` once stopped.
    pub fn cgroup_procs(&self) -> Option<PathBuf> {
        match &self.fence {
            Fence::Cgroup(b) => b.cgroup_procs(),
            Fence::Tap(_) => None,
        }
    }

    /// What a command in this bottle needs in its environment: the CA bundle for every
    /// common TLS client, each credential's placeholder, none of the real values.
    pub fn command_env(&self, cmd: &mut Command) {
        self.command_env.apply(cmd);
    }

    /// [`BottleRuntime::command_env`] as data (for a command started by another process:
    /// `cork exec` into a daemon's standing bottle). Valid for the bottle's whole life.
    pub fn command_env_vars(&self) -> &web::CommandEnv {
        &self.command_env
    }

    /// Requests held under `supervise` wait in `approvals` for an operator (the daemon
    /// decides them); call before [`BottleRuntime::start`].
    pub fn supervise_through(&mut self, approvals: Arc<cork_inspect::approvals::Approvals>) {
        self.approvals = Some(approvals);
    }

    /// Starts the DNS proxy and the inspecting proxy (as tasks on `runtime`) and the audit
    /// reader. On error, whatever started is stopped again and the bottle stays fenced.
    pub fn start(&mut self, runtime: &tokio::runtime::Handle) -> Result<(), RuntimeError> {
        if self.services.is_some() {
            return Err(RuntimeError::AlreadyStarted(self.key.to_string()));
        }
        let Some(enforcement) = self.fence.enforcement() else {
            return Err(RuntimeError::Verify {
                key: self.key.to_string(),
                source: Box::new(BottleError::Gone),
            });
        };
        let pin_dir = enforcement.pin_dir().to_path_buf();
        let resolved = Arc::new(Resolved::default());
        let mut services = Services {
            dns: None,
            learner: None,
            web: None,
            reader: None,
            guestnet: None,
        };
        // Services started so far stop again if a later one fails (Drop of `services`).
        if let Fence::Tap(t) = &self.fence {
            let link = t.link().ok_or_else(|| RuntimeError::Verify {
                key: self.key.to_string(),
                source: Box::new(BottleError::Gone),
            })?;
            services.guestnet = Some(
                cork_guestnet::GuestNet::start(link.tap.name(), link.guestnet_config(), runtime)
                    .map_err(RuntimeError::GuestNet)?,
            );
        }
        if let Some(w) = self.web.take() {
            let redirects: Arc<dyn cork_inspect::Redirects> = match &self.fence {
                Fence::Cgroup(_) => Arc::new(KernelRedirects(
                    cork_bpf::redirects::RedirectMap::open(&pin_dir)
                        .map_err(|e| RuntimeError::Web(web::WebError::Redirects(e)))?,
                )),
                Fence::Tap(t) => Arc::new(ConntrackRedirects::new(t.addressing().ok_or_else(
                    || RuntimeError::Verify {
                        key: self.key.to_string(),
                        source: Box::new(BottleError::Gone),
                    },
                )?)),
            };
            services.web = Some(w.start(
                self.live.clone(),
                redirects,
                resolved.clone(),
                self.sink.clone(),
                self.approvals.clone(),
                runtime,
            )?);
        }
        if let Some(dns) = self.dns.take() {
            let current = self.live.current();
            let learner = Arc::new(
                MapLearner::open(&pin_dir, current.policy.clone(), current.slot())
                    .map_err(RuntimeError::Learner)?,
            );
            services.learner = Some(learner.clone());
            services.dns = Some(
                dns.start(
                    DnsProxyConfig {
                        bottle: current.policy.name.clone(),
                        policy: self.live.clone(),
                        upstreams: self.upstreams.clone(),
                        upstream_timeout: UPSTREAM_TIMEOUT,
                        resolved: resolved.clone(),
                    },
                    Arc::new(KernelLearner(learner)),
                    self.sink.clone(),
                    runtime,
                )
                .map_err(RuntimeError::DnsStart)?,
            );
        }
        let writer = AuditWriter::new(
            Enrichment::new(self.name.clone(), self.live.clone(), resolved),
            self.sink.clone(),
        );
        let Some(enforcement) = self.fence.enforcement() else {
            return Err(RuntimeError::Verify {
                key: self.key.to_string(),
                source: Box::new(BottleError::Gone),
            });
        };
        services.reader = Some(
            EventReader::start(enforcement.maps_object(), writer, runtime)
                .map_err(RuntimeError::Events)?,
        );
        self.services = Some(services);
        Ok(())
    }

    /// Reads back what the kernel holds for this bottle: our programs on every hook of its
    /// cgroup and the manifest's entries in its maps.
    pub fn verify(&self) -> Result<(), RuntimeError> {
        let current = self.live.current();
        self.fence
            .verify(current.policy.plan(), current.slot())
            .map_err(|source| RuntimeError::Verify {
                key: self.key.to_string(),
                source: Box::new(source),
            })
    }

    /// Tears the bottle down (see the module docs for the order). Returns the problems
    /// met; empty when everything was removed.
    pub fn stop(mut self) -> Vec<TeardownProblem> {
        self.teardown()
    }

    fn teardown(&mut self) -> Vec<TeardownProblem> {
        // Processes die while the programs still enforce.
        // (A VM bottle's QEMU is stopped by its owner before this.)
        let mut problems = Vec::new();
        if let Fence::Cgroup(b) = &mut self.fence {
            problems.extend(b.teardown());
        }
        if let Some(services) = self.services.take() {
            if let Some(net) = services.guestnet {
                net.stop();
            }
            if let Some(dns) = services.dns {
                dns.stop();
            }
            if let Some((proxy, bundle)) = services.web {
                proxy.stop();
                drop(bundle);
            }
            if let Some(reader) = services.reader {
                reader.finish();
            }
        }
        // Never started: listeners and the bundle go with these.
        self.dns = None;
        self.web = None;
        // A VM bottle's chains, program and tap go once nothing serves on its addresses.
        problems.extend(self.fence.teardown());
        problems
    }

    /// Writes one lifecycle event for this bottle and flushes.
    pub fn lifecycle(&self, event: &'static str, detail: String) -> Result<(), SinkError> {
        self.write_event(&LifecycleEvent {
            head: cork_audit::EventHead::now(&self.name, "cork", event),
            detail,
        })
    }

    pub(crate) fn write_event(&self, event: &impl serde::Serialize) -> Result<(), SinkError> {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        sink.write(event)?;
        sink.flush()
    }
}

impl Drop for BottleRuntime {
    fn drop(&mut self) {
        for p in self.teardown() {
            tracing::warn!("bottle teardown: {}", cork_audit::error_chain(&p));
        }
    }
}
