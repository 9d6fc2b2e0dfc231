//! The bottle's inspecting proxy: listeners on 127.0.0.1 and ::1 at one port (the port the
//! kernel redirects the bottle's inspected connections to), served as tasks on the
//! agent's one tokio runtime, and what every connection shares.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cork_policy::{Credential, DlpAction, LivePolicy, Policy, RuleId};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::ca::{BottleCa, DecidedLeaf};
use super::flow;
use super::pool::Pool;
use super::swap::Credentials;
use super::upstream::{self, client_config};
use crate::redirects::Redirects;
use cork_audit::AuditSink;
use cork_dlp::Scanner;
use cork_dns::Resolved;

/// Attempts at finding a port free on both loopback addresses.
const BIND_ATTEMPTS: usize = 8;

/// Connections one bottle's proxy serves at once, both listeners together; one more is
/// refused at accept (audited `connection_limit`) and closed before anything is read from
/// it or sent upstream. Each served flow holds two of the agent's descriptors (the
/// bottle's side and upstream's) and, at worst, hyper's buffers (see the README's "Bounds
/// per bottle"): 256 is far above what a browser (6 per host) or a package manager
/// (16–64) keeps open, and 512 descriptors a bottle leaves a daemon at the usual
/// 1 048 576 open files room for thousands of bottles.
pub const MAX_CONNECTIONS: usize = 256;

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
pub struct InspectConfig {
    pub bottle: String,
    /// Swapped whole by a policy update; `[dlp]`, `[tls]` and credentials are the first
    /// generation's (an update cannot change them).
    pub policy: Arc<LivePolicy>,
    pub ca: Arc<BottleCa>,
    pub upstream_roots: Arc<RootCertStore>,
    /// Built once per bottle; every stream shares it, and it goes with the bottle.
    pub scanner: Arc<Scanner>,
    /// Built once per bottle, like the scanner; the real values go with the bottle.
    pub credentials: Arc<Credentials>,
    pub resolved: Arc<Resolved>,
    pub redirects: Arc<dyn Redirects>,
    pub sink: Arc<Mutex<AuditSink>>,
    /// Where `supervise` holds wait for an operator: the daemon's registry. `None` (a
    /// bottle of `cork run`): nobody to ask, `supervise` acts as `block`.
    pub approvals: Option<Arc<crate::approvals::Approvals>>,
}

/// The manifest id of rule `id` of `policy`.
pub fn rule_name(policy: &Policy, id: RuleId) -> Option<String> {
    policy.rule(id).map(|r| r.id.clone())
}

/// What every connection of one proxy shares.
pub struct Shared {
    pub cfg: InspectConfig,
    pub dlp_action: DlpAction,
    /// Upstream TLS offering HTTP/1.1 only (bottle spoke HTTP/1.1) or h2 first.
    pub client_h1: Arc<rustls::ClientConfig>,
    pub client_h2: Arc<rustls::ClientConfig>,
    /// Permits for the flows served at once ([`MAX_CONNECTIONS`]).
    pub connections: Arc<Semaphore>,
    /// Idle upstream connections, this bottle's only.
    pub pool: Arc<Pool>,
    /// The TLS server side per decided SNI name, with the leaf it was built for: built
    /// once, not per connection, and its session cache lets the bottle's clients resume.
    server_configs: Mutex<ServerConfigs>,
}

/// Per SNI name: the leaf a server config was built for, and the config.
type ServerConfigs = HashMap<String, (Arc<CertifiedKey>, Arc<ServerConfig>)>;

/// Server configs kept per bottle (as many as the CA caches leaves); past this the cache
/// starts over.
const MAX_SERVER_CONFIGS: usize = 4096;

impl Shared {
    /// The TLS server side for one inspected flow: the leaf for its decided SNI, ALPN
    /// h2 and HTTP/1.1.
    ///
    /// Reused while the CA serves the same leaf for the name (a leaf minted again, or
    /// the CA's cache starting over, makes a new one). Sessions it resumes were made by
    /// this config, so for this name: rustls resumes only when the new hello names the
    /// session's SNI.
    pub fn server_tls(&self, sni: &str) -> Result<Arc<ServerConfig>, String> {
        let leaf = self.cfg.ca.leaf(sni).map_err(|e| e.to_string())?;
        if let Some((held, cfg)) = super::body::lock(&self.server_configs).get(sni)
            && Arc::ptr_eq(held, &leaf)
        {
            return Ok(cfg.clone());
        }
        let mut server = ServerConfig::builder_with_provider(upstream::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(DecidedLeaf {
                name: sni.to_owned(),
                leaf: leaf.clone(),
            }));
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // The proxy's order (AES-128-GCM first, see `upstream::provider`): client and
        // proxy share this machine's CPU, so what is cheap for one is cheap for both.
        server.ignore_client_order = true;
        let server = Arc::new(server);
        let mut configs = super::body::lock(&self.server_configs);
        if configs.len() >= MAX_SERVER_CONFIGS {
            configs.clear();
        }
        configs.insert(sni.to_owned(), (leaf, server.clone()));
        Ok(server)
    }

    /// The generation in force: a connection takes it once and goes by it.
    pub fn policy(&self) -> Arc<Policy> {
        self.cfg.policy.current().policy
    }

    /// The manifest id of a rule id the kernel reported (it names its generation).
    pub fn kernel_rule_name(&self, raw: u32) -> Option<String> {
        self.cfg.policy.kernel_rule_name(raw)
    }

    pub fn audit<E: serde::Serialize>(&self, ev: &E) {
        // Serialized outside the lock every connection of the bottle shares.
        let line = cork_audit::encode(ev);
        let mut sink = super::body::lock(&self.cfg.sink);
        if let Err(e) = sink.write_encoded(line).and_then(|()| sink.flush()) {
            tracing::error!("writing a proxy audit event: {e}");
        }
    }
}

/// Listeners bound before the bottle's programs are loaded (the port is a load-time
/// constant of the kernel programs).
pub struct BoundInspectingProxy {
    v4: StdListener,
    v6: StdListener,
    port: u16,
}

impl BoundInspectingProxy {
    pub fn bind() -> io::Result<Self> {
        Self::bind_on(Ipv4Addr::LOCALHOST, Ipv6Addr::LOCALHOST)
    }

    /// [`BoundInspectingProxy::bind`] on other addresses: a VM bottle's gateway addresses,
    /// where nftables DNATs the guest's inspected flows.
    pub fn bind_on(v4_addr: Ipv4Addr, v6_addr: Ipv6Addr) -> io::Result<Self> {
        let mut last = None;
        for _ in 0..BIND_ATTEMPTS {
            let v4 = StdListener::bind((v4_addr, 0))?;
            let port = v4.local_addr()?.port();
            match bind_v6_only(v6_addr, port) {
                Ok(v6) => return Ok(BoundInspectingProxy { v4, v6, port }),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free port")))
    }

    /// [`BoundInspectingProxy::bind`] on exactly `port` (127.0.0.1 and ::1): a bottle taken
    /// over by a restarted daemon, whose programs redirect to that port. Taken by someone
    /// else is `AddrInUse`, never another port.
    pub fn bind_port(port: u16) -> io::Result<Self> {
        if port == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the inspecting proxy's port to bind again is 0",
            ));
        }
        let v4 = StdListener::bind((Ipv4Addr::LOCALHOST, port))?;
        let v6 = bind_v6_only(Ipv6Addr::LOCALHOST, port)?;
        Ok(BoundInspectingProxy { v4, v6, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts serving as tasks on `runtime` (the agent's, shared by every bottle).
    pub fn start(
        self,
        cfg: InspectConfig,
        runtime: &tokio::runtime::Handle,
    ) -> io::Result<RunningInspectingProxy> {
        let roots = cfg.upstream_roots.clone();
        let shared = Arc::new(Shared {
            dlp_action: cfg.policy.current().policy.dlp.action,
            cfg,
            client_h1: client_config(roots.clone(), &[b"http/1.1"]),
            client_h2: client_config(roots, &[b"h2", b"http/1.1"]),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            server_configs: Mutex::new(HashMap::new()),
            pool: Pool::new(runtime),
        });
        let _guard = runtime.enter();
        let mut accepts = Vec::new();
        for std in [self.v4, self.v6] {
            deepen_backlog(&std)?;
            std.set_nonblocking(true)?;
            let listener = TcpListener::from_std(std)?;
            accepts.push(runtime.spawn(accept_loop(listener, shared.clone())));
        }
        Ok(RunningInspectingProxy { accepts })
    }
}

/// The accept queue a proxy listener asks for (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// Listens again with [`LISTEN_BACKLOG`]: std listens with 128, and a bottle opening
/// connections by the hundred at once (a package manager's parallel fetches, or a noisy
/// agent) would see the handshakes past the queue dropped and retried seconds later —
/// for its over-limit connections too, which the proxy can only refuse once accepted.
fn deepen_backlog(listener: &StdListener) -> io::Result<()> {
    let backlog = nix::sys::socket::Backlog::new(LISTEN_BACKLOG).map_err(io::Error::from)?;
    nix::sys::socket::listen(listener, backlog).map_err(io::Error::from)
}

/// One IPv6 address only: binding a specific address (not `::`) never takes IPv4
/// connections, so the IPv4 listener keeps its address at the same port.
fn bind_v6_only(addr: Ipv6Addr, port: u16) -> io::Result<StdListener> {
    StdListener::bind(SocketAddr::from((addr, port)))
}

/// Accepts connections; each flow is a task in this loop's own set, so aborting the loop
/// drops every connection it accepted. A flow holds one of [`MAX_CONNECTIONS`] permits for
/// its whole life; without one it is refused here, in the loop, so a bottle opening
/// connections by the thousand costs one accept, one map lookup and one audit line each.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut flows = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match shared.connections.clone().try_acquire_owned() {
                    Ok(permit) => {
                        flows.spawn(flow::handle(shared.clone(), stream, peer, permit));
                    }
                    Err(_) => flow::refuse_over_limit(&shared, stream, peer),
                },
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("proxy accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished flows so the set holds only live ones.
            Some(_) = flows.join_next(), if !flows.is_empty() => {}
        }
    }
}

/// A serving proxy; stopping (or dropping) it stops accepting and drops every connection.
pub struct RunningInspectingProxy {
    accepts: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningInspectingProxy {
    /// Stops accepting and drops every connection.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for RunningInspectingProxy {
    fn drop(&mut self) {
        for task in &self.accepts {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VM bottle's proxy listens on its gateway addresses, both families on one port.
    #[test]
    fn the_proxy_binds_on_given_addresses() {
        let v4 = Ipv4Addr::new(127, 0, 0, 2);
        let bound = BoundInspectingProxy::bind_on(v4, Ipv6Addr::LOCALHOST).expect("bind");
        assert_eq!(
            bound.v4.local_addr().expect("v4"),
            SocketAddr::from((v4, bound.port()))
        );
        assert_eq!(
            bound.v6.local_addr().expect("v6"),
            SocketAddr::from((Ipv6Addr::LOCALHOST, bound.port()))
        );
    }
}
