//! The proxy's side towards the real server: roots it trusts (system bundle plus the
//! manifest's `tls.upstream_ca`), and one HTTP connection per bottle connection, made
//! on first use with full certificate verification against the SNI name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::{http1, http2};
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

/// A client config offering `alpn` (e.g. `h2` and `http/1.1`, or `http/1.1` only).
pub fn client_config(roots: Arc<RootCertStore>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
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
