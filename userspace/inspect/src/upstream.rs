//! The proxy's side towards the real server: roots it trusts (system bundle plus the
//! manifest's `tls.upstream_ca`), and HTTP connections made with full certificate
//! verification against the SNI name (kept between bottle connections by
//! [`crate::pool`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::BoxError;

/// Debian's bundle of the system's trusted roots (package ca-certificates).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("reading upstream CA file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("upstream CA file {path} holds no usable certificate")]
    Empty { path: PathBuf },
    #[error(
        "no roots to verify upstream servers with: {SYSTEM_ROOTS} is missing (install \
         ca-certificates) and tls.upstream_ca lists nothing"
    )]
    NoRoots,
}

/// System roots (when the bundle exists) plus every certificate in `extra`.
pub fn roots(extra: &[PathBuf]) -> Result<RootCertStore, RootsError> {
    let mut store = RootCertStore::empty();
    if Path::new(SYSTEM_ROOTS).exists() {
        add_file(&mut store, Path::new(SYSTEM_ROOTS))?;
    }
    for path in extra {
        if add_file(&mut store, path)? == 0 {
            return Err(RootsError::Empty { path: path.clone() });
        }
    }
    if store.is_empty() {
        return Err(RootsError::NoRoots);
    }
    Ok(store)
}

fn add_file(store: &mut RootCertStore, path: &Path) -> Result<usize, RootsError> {
    let read = |source| RootsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    let (added, _ignored) = store.add_parsable_certificates(certs);
    Ok(added)
}

/// ring's provider with the AES-128-GCM/SHA-256 suites first (both TLS 1.3 and 1.2),
/// for both sides of the proxy. The default puts AES-256-GCM/SHA-384 first, and SHA-384
/// has no instructions of its own on x86 (SHA-NI covers SHA-256 only): every handshake's
/// transcript hash and key schedule then run in software, several per cent of a new
/// intercepted connection. AES-128-GCM is the suite TLS 1.3 requires of everyone and
/// the one browsers prefer; every suite of the default stays on offer.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::CipherSuite as S;
    let mut p = rustls::crypto::ring::default_provider();
    let first = [
        S::TLS13_AES_128_GCM_SHA256,
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    // Stable: the rest keep the default's order.
    p.cipher_suites.sort_by_key(|s| !first.contains(&s.suite()));
    Arc::new(p)
}

/// A client config offering `alpn` (e.g. `h2` and `http/1.1`, or `http/1.1` only).
pub fn client_config(roots: Arc<RootCertStore>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

pub type UpBody = UnsyncBoxBody<Bytes, BoxError>;

/// A ready connection to the real server.
pub enum Sender {
    H1(http1::SendRequest<UpBody>),
    H2(http2::SendRequest<UpBody>),
}

impl Sender {
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    /// Whether a request can be sent now (HTTP/1.1: the last exchange is over).
    pub fn is_ready(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_ready(),
            Sender::H2(s) => s.is_ready(),
        }
    }

    /// Waits until a request can be sent; an error means the connection is gone.
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    /// Hands `req` to the connection; the future is its response. A request the
    /// connection could not take comes back in the error, untouched.
    pub fn try_send(
        &mut self,
        req: Request<UpBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, TrySendError<Request<UpBody>>>> + use<>
    {
        match self {
            Sender::H1(s) => Either::Left(s.try_send_request(req)),
            Sender::H2(s) => Either::Right(s.try_send_request(req)),
        }
    }
}

/// Why the upstream could not be reached; the message with its sources
/// ([`cork_audit::error_chain`]) goes to the 502 body and the audit.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {dst}")]
    Connect {
        dst: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {dst}: timed out")]
    Timeout { dst: SocketAddr },
    #[error("TLS with {name} at {dst}")]
    Tls {
        name: String,
        dst: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP handshake with {dst}")]
    Http {
        dst: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("{name:?} is not a valid TLS server name")]
    Name { name: String },
}

impl UpstreamError {
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } | UpstreamError::Timeout { .. } => "upstream_connect",
            UpstreamError::Tls { .. } | UpstreamError::Name { .. } => "upstream_tls",
            UpstreamError::Http { .. } => "upstream_http",
        }
    }
}

/// Opens TCP to `dialled`, or to one of `fallbacks` when it fails or is slow (see
/// [`crate::fallback`]), then TLS verified for `name` with `tls` (`None`: plain HTTP), then
/// HTTP/2 when the server chose it by ALPN, else HTTP/1.1. Returns the sender and the
/// address that served.
pub async fn connect(
    dialled: SocketAddr,
    fallbacks: impl FnOnce() -> Vec<SocketAddr>,
    name: &str,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(Sender, SocketAddr), UpstreamError> {
    let (tcp, dst) = crate::fallback::connect(dialled, fallbacks)
        .await
        .map_err(|f| match f.error {
            Some(source) => UpstreamError::Connect { dst: f.dst, source },
            None => UpstreamError::Timeout { dst: f.dst },
        })?;
    let _ = tcp.set_nodelay(true);
    let http = |source| UpstreamError::Http { dst, source };
    let Some(tls) = tls else {
        let (send, conn) = http1::handshake(TokioIo::new(tcp)).await.map_err(http)?;
        tokio::spawn(conn.with_upgrades());
        return Ok((Sender::H1(send), dst));
    };
    let server_name = ServerName::try_from(name.to_owned()).map_err(|_| UpstreamError::Name {
        name: name.to_owned(),
    })?;
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TlsConnector::from(tls.clone()).connect(server_name, tcp),
    )
    .await
    .map_err(|_| UpstreamError::Timeout { dst })?
    .map_err(|source| UpstreamError::Tls {
        name: name.to_owned(),
        dst,
        source,
    })?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        Ok((Sender::H2(send), dst))
    } else {
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
        tokio::spawn(conn.with_upgrades());
        Ok((Sender::H1(send), dst))
    }
}
