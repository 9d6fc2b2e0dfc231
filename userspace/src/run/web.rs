//! The bottle's inspecting proxy, as `cork run` sets it up: everything that can fail is
//! prepared before the bottle exists (credentials, DLP scanner, CA, bundle, listeners);
//! the proxy itself starts once the command runs (its runtime's threads must not exist
//! when the command's process is forked).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use cork_policy::{Action, Policy};
use rustls::RootCertStore;

use crate::audit::AuditSink;
use crate::bpf::MapError;
use crate::bpf::redirects::RedirectMap;
use crate::dlp::Scanner;
use crate::dns::Resolved;
use crate::proxy::ca::{BottleCa, CaError};
use crate::proxy::setup::{self, CA_ENV_VARS, CaBundle, SetupError};
use crate::proxy::swap::{CredentialError, Credentials};
use crate::proxy::upstream::{self, RootsError};
use crate::proxy::{BoundWebProxy, LoadedCredential, RunningWebProxy, WebProxyConfig};

/// Where bundles live: `/run/cork/<bottle key>/ca-bundle.pem`.
pub const RUN_DIR: &str = "/run/cork";

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
    bound: BoundWebProxy,
    ca: Arc<BottleCa>,
    creds: Vec<LoadedCredential>,
    swaps: &'static Credentials,
    scanner: &'static Scanner,
    roots: Arc<RootCertStore>,
    bundle: CaBundle,
}

impl WebSetup {
    /// `None` when no rule sends anything through the proxy (no domain allow rules).
    pub fn prepare(policy: &Policy, key: &str) -> Result<Option<Self>, WebError> {
        if !policy.domains.iter().any(|d| d.action == Action::Allow) {
            return Ok(None);
        }
        let creds = setup::load_credentials(policy, |k| std::env::var(k).ok())?;
        // One scanner per bottle, alive as long as the agent: every stream borrows it.
        let scanner: &'static Scanner = Box::leak(Box::new(
            setup::scanner(policy, &creds).map_err(SetupError::from)?,
        ));
        let swaps: &'static Credentials = Box::leak(Box::new(Credentials::new(&creds)?));
        let roots = Arc::new(upstream::roots(&policy.tls.upstream_ca)?);
        let ca = Arc::new(BottleCa::new(&policy.name)?);
        std::fs::create_dir_all(RUN_DIR).map_err(WebError::RunDir)?;
        let bundle = CaBundle::write(&PathBuf::from(RUN_DIR).join(key), ca.cert_pem())?;
        let bound = BoundWebProxy::bind().map_err(WebError::Bind)?;
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
    ) -> Result<(RunningWebProxy, CaBundle), WebError> {
        let redirects = RedirectMap::open(pin_dir).map_err(WebError::Redirects)?;
        let running = self
            .bound
            .start(WebProxyConfig {
                bottle: policy.name.clone(),
                policy,
                ca: self.ca,
                upstream_roots: self.roots,
                scanner: self.scanner,
                credentials: self.swaps,
                resolved,
                redirects,
                sink,
            })
            .map_err(WebError::Start)?;
        Ok((running, self.bundle))
    }
}
