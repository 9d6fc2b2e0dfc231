//! The bottle's inspecting proxy: listeners on 127.0.0.1 and ::1 at one port (the port the
//! kernel redirects the bottle's inspected connections to), a tokio runtime of its own,
//! and what every connection shares.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cork_policy::{Credential, DlpAction, Policy};
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;

use super::ca::{BottleCa, DecidedLeaf};
use super::flow;
use super::swap::Credentials;
use super::upstream::client_config;
use crate::audit::AuditSink;
use crate::bpf::redirects::RedirectMap;
use crate::dlp::Scanner;
use crate::dns::Resolved;

/// Attempts at finding a port free on both loopback addresses.
const BIND_ATTEMPTS: usize = 8;

/// A credential with its real value, read from cork's own environment at start.
/// `Debug` never shows the value.
#[derive(Clone)]
pub struct LoadedCredential {
    pub credential: Credential,
    pub real: String,
}

impl std::fmt::Debug for LoadedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCredential")
            .field("domain", &self.credential.domain)
            .field("env", &self.credential.env)
            .finish_non_exhaustive()
    }
}

/// Everything the proxy of one bottle needs.
pub struct WebProxyConfig {
    pub bottle: String,
    pub policy: Arc<Policy>,
    pub ca: Arc<BottleCa>,
    pub upstream_roots: Arc<RootCertStore>,
    /// Built once per bottle and kept for the agent's life: every stream borrows it.
    pub scanner: &'static Scanner,
    /// Built once per bottle and kept for the agent's life, like the scanner.
    pub credentials: &'static Credentials,
    pub resolved: Arc<Resolved>,
    pub redirects: RedirectMap,
    pub sink: Arc<Mutex<AuditSink>>,
}

/// What every connection of one proxy shares.
pub struct Shared {
    pub cfg: WebProxyConfig,
    pub dlp_action: DlpAction,
    /// Upstream TLS offering HTTP/1.1 only (bottle spoke HTTP/1.1) or h2 first.
    pub client_h1: Arc<rustls::ClientConfig>,
    pub client_h2: Arc<rustls::ClientConfig>,
}

impl Shared {
    /// The TLS server side for one inspected flow: the leaf for its decided SNI, ALPN
    /// h2 and HTTP/1.1.
    pub fn server_tls(&self, sni: &str) -> Result<Arc<ServerConfig>, String> {
        let leaf = self.cfg.ca.leaf(sni).map_err(|e| e.to_string())?;
        let mut server =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(DecidedLeaf {
                    name: sni.to_owned(),
                    leaf,
                }));
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(server))
    }

    pub fn rule_name(&self, rule_id: u16) -> Option<String> {
        self.cfg.policy.rule(rule_id).map(|r| r.id.clone())
    }

    pub fn audit<E: serde::Serialize>(&self, ev: &E) {
        let mut sink = super::body::lock(&self.cfg.sink);
        if let Err(e) = sink.write(ev).and_then(|()| sink.flush()) {
            tracing::error!("writing a proxy audit event: {e}");
        }
    }
}

/// Listeners bound before the bottle's programs are loaded (the port is a load-time
/// constant of the kernel programs).
pub struct BoundWebProxy {
    v4: StdListener,
    v6: StdListener,
    port: u16,
}

impl BoundWebProxy {
    pub fn bind() -> io::Result<Self> {
        let mut last = None;
        for _ in 0..BIND_ATTEMPTS {
            let v4 = StdListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            let port = v4.local_addr()?.port();
            match bind_v6_only(port) {
                Ok(v6) => return Ok(BoundWebProxy { v4, v6, port }),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free port")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts serving on a runtime of its own.
    pub fn start(self, cfg: WebProxyConfig) -> io::Result<RunningWebProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cork-proxy")
            .enable_all()
            .build()?;
        let roots = cfg.upstream_roots.clone();
        let shared = Arc::new(Shared {
            dlp_action: cfg.policy.dlp.action,
            cfg,
            client_h1: client_config(roots.clone(), &[b"http/1.1"]),
            client_h2: client_config(roots, &[b"h2", b"http/1.1"]),
        });
        let _guard = runtime.enter();
        for std in [self.v4, self.v6] {
            std.set_nonblocking(true)?;
            let listener = TcpListener::from_std(std)?;
            runtime.spawn(accept_loop(listener, shared.clone()));
        }
        drop(_guard);
        Ok(RunningWebProxy {
            runtime: Some(runtime),
        })
    }
}

/// [::1] only: binding the loopback address (not `::`) never takes IPv4 connections, so
/// the IPv4 listener keeps 127.0.0.1 at the same port.
fn bind_v6_only(port: u16) -> io::Result<StdListener> {
    StdListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(flow::handle(shared.clone(), stream, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("proxy accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub struct RunningWebProxy {
    runtime: Option<tokio::runtime::Runtime>,
}

impl RunningWebProxy {
    /// Stops accepting and drops every connection.
    pub fn stop(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for RunningWebProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
