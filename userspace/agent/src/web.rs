//! The bottle's inspecting proxy, as the runtime sets it up: everything that can fail is
//! prepared before the bottle exists (credentials, DLP scanner, CA, bundle, listeners);
//! the proxy itself starts serving once the bottle is enforced.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use cork_policy::{Action, Policy};
use rustls::RootCertStore;

use cork_audit::AuditSink;
use cork_bpf::MapError;
use cork_bpf::redirects::RedirectMap;
use cork_dlp::Scanner;
use cork_dns::Resolved;
use cork_inspect::ca::{BottleCa, CaError};
pub use cork_inspect::setup::SetupError;
use cork_inspect::setup::{self, CA_ENV_VARS, CaBundle};
use cork_inspect::swap::{CredentialError, Credentials};
use cork_inspect::upstream::{self, RootsError};
use cork_inspect::{BoundInspectingProxy, InspectConfig, LoadedCredential, RunningInspectingProxy};

use crate::adapters::KernelRedirects;
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
    #[error("binding the bottle's inspecting proxy on 127.0.0.1 and ::1")]
    Bind(#[source] std::io::Error),
    #[error("opening the bottle's redirect map for the proxy")]
    Redirects(#[source] MapError),
    #[error("starting the inspecting proxy")]
    Start(#[source] std::io::Error),
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

impl WebSetup {
    /// `None` when no rule sends anything through the proxy (no domain allow rules).
    pub fn prepare(policy: &Policy, key: &BottleKey) -> Result<Option<Self>, WebError> {
        if !policy.domains.iter().any(|d| d.action == Action::Allow) {
            return Ok(None);
        }
        let creds = setup::load_credentials(policy, |k| std::env::var(k).ok())?;
        // One scanner and one set of swappers per bottle, shared by its streams and
        // dropped with the bottle (the real credential values with them).
        let scanner = Arc::new(setup::scanner(policy, &creds)?);
        let swaps = Arc::new(Credentials::new(&creds)?);
        let roots = Arc::new(upstream::roots(&policy.tls.upstream_ca)?);
        let ca = Arc::new(BottleCa::new(&policy.name)?);
        std::fs::create_dir_all(RUN_DIR).map_err(WebError::RunDir)?;
        let bundle = CaBundle::write(&key.run_dir(), ca.cert_pem())?;
        let bound = BoundInspectingProxy::bind().map_err(WebError::Bind)?;
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

    /// The command's environment: the bundle for every common TLS client, each
    /// credential's placeholder, and none of the real values cork read.
    pub fn child_env(&self, cmd: &mut Command) {
        for var in CA_ENV_VARS {
            cmd.env(var, self.bundle.path());
        }
        for c in &self.creds {
            cmd.env_remove(&c.credential.value_env);
            cmd.env(&c.credential.env, &c.credential.placeholder);
        }
    }

    /// Starts serving. The returned bundle must outlive the command.
    pub fn start(
        self,
        policy: Arc<Policy>,
        pin_dir: &Path,
        resolved: Arc<Resolved>,
        sink: Arc<Mutex<AuditSink>>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(RunningInspectingProxy, CaBundle), WebError> {
        let redirects = RedirectMap::open(pin_dir).map_err(WebError::Redirects)?;
        let running = self
            .bound
            .start(
                InspectConfig {
                    bottle: policy.name.clone(),
                    policy,
                    ca: self.ca,
                    upstream_roots: self.roots,
                    scanner: self.scanner,
                    credentials: self.swaps,
                    resolved,
                    redirects: Arc::new(KernelRedirects(redirects)),
                    sink,
                },
                runtime,
            )
            .map_err(WebError::Start)?;
        Ok((running, self.bundle))
    }
}

/// Builds the DLP scanner `policy` asks for (built-ins plus the manifest's detectors),
/// without credentials: how `cork check` validates the `[dlp]` section the same way the
/// runtime will.
pub fn check_scanner(policy: &Policy) -> Result<(), SetupError> {
    offline_scanner(policy).map(drop)
}

/// The scanner `policy` asks for, without credentials (`cork dlp scan --manifest`).
pub fn offline_scanner(policy: &Policy) -> Result<Scanner, SetupError> {
    setup::scanner(policy, &[])
}
