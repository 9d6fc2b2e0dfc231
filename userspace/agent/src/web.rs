//! The bottle's inspecting proxy, as the runtime sets it up: everything that can fail is
//! prepared before the bottle exists (credentials, DLP scanner, CA, bundle, listeners);
//! the proxy itself starts serving once the bottle is enforced.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::{Arc, Mutex};

use cork_policy::{LivePolicy, Policy};
use rustls::RootCertStore;

use cork_audit::AuditSink;
use cork_bpf::MapError;
use cork_dlp::Scanner;
use cork_dns::Resolved;
use cork_inspect::ca::{BottleCa, CaError};
pub use cork_inspect::setup::SetupError;
use cork_inspect::setup::{self, CA_ENV_VARS, CaBundle};
use cork_inspect::swap::{CredentialError, Credentials};
use cork_inspect::upstream::{self, RootsError};
use cork_inspect::{
    BoundInspectingProxy, InspectConfig, LoadedCredential, Redirects, RunningInspectingProxy,
};

use crate::key::{BottleKey, RUN_DIR};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("making the bottle's CA")]
    Ca(#[from] CaError),
    #[error(transparent)]
    Roots(#[from] RootsError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("creating {RUN_DIR}")]
    RunDir(#[source] std::io::Error),
    #[error("binding the bottle's inspecting proxy")]
    Bind(#[source] std::io::Error),
    #[error("opening the bottle's redirect map for the proxy")]
    Redirects(#[source] MapError),
    #[error("starting the inspecting proxy")]
    Start(#[source] std::io::Error),
}

/// What a command in a bottle gets in its environment from the bottle (beyond what the
/// host-secrets decision removes): variables set, and variables removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandEnv {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl CommandEnv {
    /// Applies this to `cmd` (std builds the environment block before fork, so the
    /// command's `/proc/self/environ` never holds what is removed).
    pub fn apply(&self, cmd: &mut Command) {
        for name in &self.remove {
            cmd.env_remove(name);
        }
        for (name, value) in &self.set {
            cmd.env(name, value);
        }
    }
}

/// Where the inspecting proxy listens.
#[derive(Debug, Clone, Copy)]
pub enum Listen {
    /// 127.0.0.1 and ::1: a cgroup bottle's connects are redirected there.
    Loopback,
    /// A VM bottle's gateway addresses, where nftables DNATs the guest's flows.
    On(Ipv4Addr, Ipv6Addr),
}

pub struct WebSetup {
    bound: BoundInspectingProxy,
    ca: Arc<BottleCa>,
    creds: Vec<LoadedCredential>,
    swaps: Arc<Credentials>,
    scanner: Arc<Scanner>,
    roots: Arc<RootCertStore>,
    bundle: CaBundle,
}

/// What [`WebSetup::prepare`] and [`WebSetup::restore`] both build: the credentials from
/// the agent's environment, one scanner and one set of swappers per bottle (shared by its
/// streams and dropped with the bottle, the real credential values with them), and the
/// upstream roots.
struct Built {
    creds: Vec<LoadedCredential>,
    scanner: Arc<Scanner>,
    swaps: Arc<Credentials>,
    roots: Arc<RootCertStore>,
}

impl Built {
    fn from(policy: &Policy) -> Result<Self, WebError> {
        let creds = setup::load_credentials(policy, |k| std::env::var(k).ok())?;
        Ok(Built {
            scanner: Arc::new(setup::scanner(policy, &creds)?),
            swaps: Arc::new(Credentials::new(&creds)?),
            roots: Arc::new(upstream::roots(&policy.tls.upstream_ca)?),
            creds,
        })
    }
}

impl WebSetup {
    /// `None` when no rule sends anything through the proxy (no domain allow rules).
    pub fn prepare(
        policy: &Policy,
        key: &BottleKey,
        listen: Listen,
    ) -> Result<Option<Self>, WebError> {
        if !cork_policy::needs_inspecting_proxy(policy) {
            return Ok(None);
        }
        let Built {
            creds,
            scanner,
            swaps,
            roots,
        } = Built::from(policy)?;
        let ca = Arc::new(BottleCa::new(&policy.name)?);
        std::fs::create_dir_all(RUN_DIR).map_err(WebError::RunDir)?;
        let bundle = CaBundle::write(&key.run_dir(), ca.cert_pem())?;
        let bound = match listen {
            Listen::Loopback => BoundInspectingProxy::bind(),
            Listen::On(v4, v6) => BoundInspectingProxy::bind_on(v4, v6),
        }
        .map_err(WebError::Bind)?;
        Ok(Some(WebSetup {
            bound,
            ca,
            creds,
            swaps,
            scanner,
            roots,
            bundle,
        }))
    }

    /// [`WebSetup::prepare`] for a bottle a restarted daemon takes back: the CA its
    /// processes already trust (from the daemon's state), the bundle left in its run
    /// directory, and exactly the listener port its programs redirect to. `Ok(None)` when
    /// the policy sends nothing through the proxy.
    pub fn restore(
        policy: &Policy,
        key: &BottleKey,
        ca_cert_pem: &str,
        ca_key_pem: &str,
        port: u16,
    ) -> Result<Option<Self>, WebError> {
        if !cork_policy::needs_inspecting_proxy(policy) {
            return Ok(None);
        }
        let Built {
            creds,
            scanner,
            swaps,
            roots,
        } = Built::from(policy)?;
        let ca = Arc::new(BottleCa::restore(&policy.name, ca_cert_pem, ca_key_pem)?);
        std::fs::create_dir_all(RUN_DIR).map_err(WebError::RunDir)?;
        let bound = BoundInspectingProxy::bind_port(port).map_err(WebError::Bind)?;
        let bundle = CaBundle::adopt(&key.run_dir(), ca.cert_pem())?;
        Ok(Some(WebSetup {
            bound,
            ca,
            creds,
            swaps,
            scanner,
            roots,
            bundle,
        }))
    }

    pub fn port(&self) -> u16 {
        self.bound.port()
    }

    /// The bottle's CA (the daemon keeps its key so a restart serves the same one).
    pub fn ca(&self) -> Arc<BottleCa> {
        self.ca.clone()
    }

    /// What a VM guest gets instead of [`WebSetup::child_env`]: the CA certificate to
    /// trust and each credential's placeholder variable.
    pub fn guest_files(&self) -> crate::runtime::GuestFiles {
        crate::runtime::GuestFiles {
            ca_pem: Some(self.ca.cert_pem().to_owned()),
            env: self
                .creds
                .iter()
                .map(|c| (c.credential.env.clone(), c.credential.placeholder.clone()))
                .collect(),
        }
    }

    /// The command's environment: the bundle for every common TLS client, each
    /// credential's placeholder, and none of the real values cork read.
    pub fn command_env(&self) -> CommandEnv {
        let bundle = self.bundle.path().display().to_string();
        let mut env = CommandEnv::default();
        for var in CA_ENV_VARS {
            env.set.push((var.to_string(), bundle.clone()));
        }
        for c in &self.creds {
            env.remove.push(c.credential.value_env.clone());
            env.set
                .push((c.credential.env.clone(), c.credential.placeholder.clone()));
        }
        env
    }

    /// Starts serving. The returned bundle must outlive the command.
    pub fn start(
        self,
        policy: Arc<LivePolicy>,
        redirects: Arc<dyn Redirects>,
        resolved: Arc<Resolved>,
        sink: Arc<Mutex<AuditSink>>,
        approvals: Option<Arc<cork_inspect::approvals::Approvals>>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(RunningInspectingProxy, CaBundle), WebError> {
        let running = self
            .bound
            .start(
                InspectConfig {
                    bottle: policy.current().policy.name.clone(),
                    policy,
                    ca: self.ca,
                    upstream_roots: self.roots,
                    scanner: self.scanner,
                    credentials: self.swaps,
                    resolved,
                    redirects,
                    sink,
                    approvals,
                },
                runtime,
            )
            .map_err(WebError::Start)?;
        Ok((running, self.bundle))
    }
}

/// The scanner `policy` asks for, without credentials (`cork dlp scan --manifest`).
pub fn offline_scanner(policy: &Policy) -> Result<Scanner, SetupError> {
    setup::scanner(policy, &[])
}
