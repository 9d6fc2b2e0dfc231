//! [`HttpsUpstream`]: a real HTTPS and HTTP server on a World's internet side, the
//! upstream that cork's inspecting proxy connects to in tests. It records every request
//! in a [`RequestLog`] the test reads: head, SNI, body (and whether the body ended or was
//! cut, which is how a test proves a secret never arrived), WebSocket messages.
//!
//! ```ignore
//! let ca = TestCa::new()?;
//! ca.write_pem(&world.path("ca", "pem"))?;
//! let up = world.https_upstream(
//!     &ca,
//!     UpstreamConfig::new()
//!         .name("api.example.test")
//!         .tls("198.51.100.10:443".parse()?)
//!         .tls("[2001:db8::10]:443".parse()?)
//!         .plain("198.51.100.10:80".parse()?),
//! )?; // listening on return
//! // ... a client reaches https://api.example.test/ ...
//! let reqs = up.log().wait_settled(1, Duration::from_secs(5))?; // an error on timeout
//! // To prove a secret never arrived: send a clean request to /after last, then
//! up.log().wait_sentinel("/after", Duration::from_secs(5))?;
//! assert!(!up.log().saw(b"AKIA..."));
//! ```
//!
//! TLS listeners offer ALPN `h2` and `http/1.1` and serve whichever the client picked
//! (HTTP/1.1 without ALPN); plain listeners serve HTTP/1.1. The endpoints are in
//! [`handler`]. The server is a tokio runtime on a thread that entered the namespace
//! before binding; dropping the handle (or [`HttpsUpstream::stop`]) ends the runtime,
//! which closes every socket, so nothing holds the namespace afterwards.

mod ca;
pub mod handler;
mod log;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

pub use ca::{CA_NAME, ServerCert, TestCa};
pub use log::{BODY_KEEP, BodyEnd, Conn, Request, RequestLog, WsMessage};

use crate::addr::check_ip;
use crate::netns::Netns;
use crate::world::World;
use handler::ConnInfo;

/// What to listen on and which names the certificate carries.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    tls: Vec<SocketAddr>,
    plain: Vec<SocketAddr>,
    names: Vec<String>,
    workers: usize,
    alpn: Vec<Vec<u8>>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            tls: Vec::new(),
            plain: Vec::new(),
            names: Vec::new(),
            workers: 1,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

impl UpstreamConfig {
    /// No listeners, no names, one worker thread, ALPN `h2` and `http/1.1`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TLS listener (port 0 picks one; see [`HttpsUpstream::tls_addrs`]).
    pub fn tls(mut self, addr: SocketAddr) -> Self {
        self.tls.push(addr);
        self
    }

    /// Adds a plain-HTTP listener.
    pub fn plain(mut self, addr: SocketAddr) -> Self {
        self.plain.push(addr);
        self
    }

    /// Adds a DNS name (ending in `.test`) to the certificate. The certificate also
    /// carries every specific TLS listen address as an IP SAN.
    pub fn name(mut self, name: &str) -> Self {
        self.names.push(name.to_owned());
        self
    }

    /// Tokio worker threads (default 1; a benchmark wants more).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Offers only HTTP/1.1 in ALPN (as most intercepting proxies speak upstream).
    pub fn http1_only(mut self) -> Self {
        self.alpn = vec![b"http/1.1".to_vec()];
        self
    }
}

/// A running upstream; dropping it stops it.
#[derive(Debug)]
pub struct HttpsUpstream {
    tls: Vec<SocketAddr>,
    plain: Vec<SocketAddr>,
    cert: ServerCert,
    log: Arc<RequestLog>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl HttpsUpstream {
    /// Starts the server in `ns` with a certificate from `ca`; returns once every
    /// listener is bound. The addresses must already exist in `ns`
    /// ([`World::https_upstream`] adds internet-side ones).
    pub fn start(ns: &Netns, ca: &TestCa, cfg: UpstreamConfig) -> Result<Self> {
        for a in cfg.tls.iter().chain(&cfg.plain) {
            check_ip(a.ip())?;
        }
        let mut names = cfg.names.clone();
        for a in &cfg.tls {
            let ip = a.ip().to_string();
            if !a.ip().is_unspecified() && !names.contains(&ip) {
                names.push(ip);
            }
        }
        if names.is_empty() {
            bail!("the upstream certificate needs a name or a specific TLS address");
        }
        let cert = ca.issue(&names)?;
        let tls_config = server_config(&cert, cfg.alpn.clone())?;
        let log = Arc::new(RequestLog::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_log = log.clone();
        let thread = ns.spawn("https-upstream", move || {
            run(cfg, tls_config, thread_log, stop_rx, ready_tx)
        })?;
        let mut up = Self {
            tls: Vec::new(),
            plain: Vec::new(),
            cert,
            log,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok((tls, plain)) => {
                up.tls = tls;
                up.plain = plain;
                Ok(up)
            }
            Err(_) => Err(up
                .shutdown()
                .err()
                .unwrap_or_else(|| anyhow!("never became ready"))
                .context(format!("start https upstream in {}", ns.name()))),
        }
    }

    /// The bound TLS addresses, in the order configured.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls
    }

    /// The bound plain-HTTP addresses, in the order configured.
    pub fn plain_addrs(&self) -> &[SocketAddr] {
        &self.plain
    }

    /// The certificate the server presents.
    pub fn cert(&self) -> &ServerCert {
        &self.cert
    }

    /// What the server saw.
    pub fn log(&self) -> &RequestLog {
        &self.log
    }

    /// A handle on the log that outlives the server.
    pub fn log_handle(&self) -> Arc<RequestLog> {
        self.log.clone()
    }

    /// Stops the server and reports whether its thread failed.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        drop(self.stop.take());
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e.context("https upstream failed")),
            Some(Err(_)) => bail!("https upstream thread panicked"),
        }
    }
}

impl Drop for HttpsUpstream {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("cork-integration: {e:#}");
        }
    }
}

impl World {
    /// Starts an [`HttpsUpstream`] on the internet side; its addresses are added to the
    /// internet namespace on demand. Stop it (drop it) before the World goes.
    pub fn https_upstream(&self, ca: &TestCa, cfg: UpstreamConfig) -> Result<HttpsUpstream> {
        for a in cfg.tls.iter().chain(&cfg.plain) {
            let ip = check_ip(a.ip())?;
            if !ip.is_unspecified() && !ip.is_loopback() {
                self.add_internet_ip(ip)?;
            }
        }
        HttpsUpstream::start(self.internet(), ca, cfg)
    }
}

fn server_config(cert: &ServerCert, alpn: Vec<Vec<u8>>) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.clone()], cert.key_der())
        .context("server certificate")?;
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

type Bound = (Vec<SocketAddr>, Vec<SocketAddr>);

/// The server thread: binds, reports, serves until `stop` fires or is dropped.
fn run(
    cfg: UpstreamConfig,
    tls_config: Arc<rustls::ServerConfig>,
    log: Arc<RequestLog>,
    stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Bound>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.workers)
        .thread_name("https-upstream-worker")
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let result = rt.block_on(async move {
        let acceptor = TlsAcceptor::from(tls_config);
        let mut bound = (Vec::new(), Vec::new());
        let mut listeners = Vec::new();
        for (addrs, tls, out) in [
            (&cfg.tls, true, &mut bound.0),
            (&cfg.plain, false, &mut bound.1),
        ] {
            for &a in addrs {
                let l = TcpListener::bind(a)
                    .await
                    .with_context(|| format!("bind {a}"))?;
                out.push(l.local_addr()?);
                listeners.push((l, tls));
            }
        }
        for (l, tls) in listeners {
            let (log, acceptor) = (log.clone(), tls.then(|| acceptor.clone()));
            tokio::spawn(accept_loop(l, acceptor, log));
        }
        let _ = ready.send(bound);
        // Either a send or the sender's drop ends the server.
        let _ = stop.await;
        anyhow::Ok(())
    });
    // Dropping the runtime cancels every connection task and closes every socket.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn accept_loop(l: TcpListener, acceptor: Option<TlsAcceptor>, log: Arc<RequestLog>) {
    let local = l.local_addr().ok();
    loop {
        let (stream, peer) = match l.accept().await {
            Ok(x) => x,
            // Per-connection failures (ECONNABORTED, EMFILE) must not end the listener.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            id: 0,
            peer,
            local: local.unwrap_or(peer),
            tls: acceptor.is_some(),
            sni: None,
            alpn: None,
            handshake_error: None,
        };
        tokio::spawn(serve_conn(stream, conn, acceptor.clone(), log.clone()));
    }
}

async fn serve_conn(
    stream: TcpStream,
    mut conn: Conn,
    acceptor: Option<TlsAcceptor>,
    log: Arc<RequestLog>,
) {
    let Some(acceptor) = acceptor else {
        let info = ConnInfo {
            conn: log.add_conn(conn),
            sni: None,
        };
        serve_http1(TokioIo::new(stream), info, log).await;
        return;
    };
    let tls = match acceptor.accept(stream).await {
        Ok(t) => t,
        Err(e) => {
            conn.handshake_error = Some(e.to_string());
            log.add_conn(conn);
            return;
        }
    };
    let session = tls.get_ref().1;
    conn.sni = session.server_name().map(str::to_owned);
    conn.alpn = session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let h2 = conn.alpn.as_deref() == Some("h2");
    let info = ConnInfo {
        sni: conn.sni.clone(),
        conn: log.add_conn(conn),
    };
    if h2 {
        let svc = service_fn(move |req| handler::handle(req, log.clone(), info.clone()));
        let _ = http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    } else {
        serve_http1(TokioIo::new(tls), info, log).await;
    }
}

async fn serve_http1<I>(io: I, info: ConnInfo, log: Arc<RequestLog>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handler::handle(req, log.clone(), info.clone()));
    let _ = http1::Builder::new()
        .serve_connection(io, svc)
        .with_upgrades()
        .await;
}
