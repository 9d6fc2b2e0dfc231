//! The load generator: C keep-alive HTTP/1.1-over-TLS connections sending one small
//! request after another, either as fast as the answers come (closed loop, the maximum
//! rate) or on a fixed schedule (open loop, for latency at a given rate).
//!
//! In the open loop, request `i` is due at `start + i / rate`; a connection takes the
//! next due request when it is free, and a request whose connection was still busy when
//! it fell due counts its latency from then, not from when it was sent, so a stall shows
//! up in the percentiles instead of silently lowering the rate (the correction wrk2
//! makes for coordinated omission).
//!
//! A connection reaches the server directly (`connect_to`, also what a bottle's
//! transparently intercepted connect looks like) or through an explicit proxy with
//! `CONNECT`; TLS is then spoken end to end with the URL's host name as SNI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What to load and how.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Host name: SNI, certificate name and `Host` header.
    pub host: String,
    /// The URL's port: in `Host` (unless 443) and in a `CONNECT` by name.
    pub port: u16,
    /// Path and query of every request.
    pub path: String,
    /// Where the TCP connection goes when there is no proxy.
    pub connect_to: SocketAddr,
    /// An explicit proxy: connect here and `CONNECT connect_to`.
    pub proxy: Option<SocketAddr>,
    /// Name the target in `CONNECT` as `host:port` (what curl does) rather than by
    /// `connect_to`'s address; the proxy then resolves `host` itself.
    pub connect_by_name: bool,
    /// PEM file of the CA(s) to trust.
    pub cacert: PathBuf,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Unmeasured closed-loop time first (connections, TLS, the proxies' caches).
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// `None`: closed loop; `Some(r)`: open loop at `r` requests per second.
    pub rate: Option<f64>,
    /// POST a body of this many bytes instead of a GET.
    pub body: Option<usize>,
    /// One request per connection: connect, a full TLS handshake (no session
    /// resumption), one request, then a reset (no TIME_WAIT left behind), so the rate is
    /// bound by handshakes.
    pub fresh: bool,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Completed requests in the measured window.
    pub requests: u64,
    /// Failed requests (the connection is re-established after each).
    pub errors: u64,
    /// Requests per second over the measured window.
    pub rate: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Latency (µs) at each of [`cork_bench_report::cdf_probabilities`].
    pub cdf: Vec<u64>,
}

impl std::fmt::Display for LoadResult {
    /// The one line `cork-proxy-bench load` prints and the comparison parses.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rate={:.1}/s requests={} errors={} p50={}us p99={}us {}",
            self.rate,
            self.requests,
            self.errors,
            self.p50_us,
            self.p99_us,
            cork_bench_report::format_list("q", &self.cdf)
        )
    }
}

impl LoadResult {
    /// Parses the line [`LoadResult`]'s `Display` writes, wherever it is in `text`.
    pub fn parse(text: &str) -> Result<Self> {
        let field = |key: &str| -> Result<&str> {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .with_context(|| format!("no {key} in load output:\n{text}"))
        };
        Ok(Self {
            rate: field("rate=")?.trim_end_matches("/s").parse()?,
            requests: field("requests=")?.parse()?,
            errors: field("errors=")?.parse()?,
            p50_us: field("p50=")?.trim_end_matches("us").parse()?,
            p99_us: field("p99=")?.trim_end_matches("us").parse()?,
            cdf: cork_bench_report::parse_list(text, "q")
                .with_context(|| format!("no q= in load output:\n{text}"))?,
        })
    }
}

impl LoadSpec {
    /// `host`, or `host:port` when the port is not 443 (what `Host` carries).
    pub fn authority(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

struct Shared {
    spec: LoadSpec,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    /// The open loop's next request number.
    next: AtomicU64,
    errors: AtomicU64,
    /// The first error, for the report.
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, e: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| format!("{e:#}"));
    }
}

/// Runs the load on a tokio runtime with `threads` worker threads.
pub fn run(spec: LoadSpec, threads: usize) -> Result<LoadResult> {
    ensure!(spec.concurrency > 0, "concurrency must be at least 1");
    if let Some(r) = spec.rate {
        ensure!(r.is_finite() && r > 0.0, "rate must be positive, not {r}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run_async(spec))
}

async fn run_async(spec: LoadSpec) -> Result<LoadResult> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&spec.cacert)
        .with_context(|| format!("read {}", spec.cacert.display()))?
    {
        roots
            .add(cert.with_context(|| format!("parse {}", spec.cacert.display()))?)
            .context("add CA")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if spec.fresh {
        config.resumption = rustls::client::Resumption::disabled();
    }
    let server_name = ServerName::try_from(spec.host.clone())
        .with_context(|| format!("server name {:?}", spec.host))?;
    let shared = Arc::new(Shared {
        tls: TlsConnector::from(Arc::new(config)),
        server_name,
        next: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
        spec,
    });
    // One connection first: a setup mistake fails fast with its real error.
    drop(connect(&shared).await.context("first connection")?);
    let start = Instant::now();
    let measure_from = start + shared.spec.warmup;
    let end = measure_from + shared.spec.duration;
    let tasks: Vec<_> = (0..shared.spec.concurrency)
        .map(|_| tokio::spawn(conn_task(shared.clone(), measure_from, end)))
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.context("connection task")?);
    }
    if let Some(e) = shared
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        eprintln!("first error: {e}");
    }
    let secs = shared.spec.duration.as_secs_f64();
    let mut lat: Vec<u64> = lat.into_iter().map(u64::from).collect();
    lat.sort_unstable();
    let pct = |p: f64| cork_bench_report::quantiles(&lat, &[p])[0];
    Ok(LoadResult {
        requests: lat.len() as u64,
        errors: shared.errors.load(Ordering::Relaxed),
        rate: lat.len() as f64 / secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        cdf: cork_bench_report::quantiles(&lat, &cork_bench_report::cdf_probabilities()),
    })
}

/// One connection's life: warm up closed-loop, then measure; returns latencies (µs).
async fn conn_task(shared: Arc<Shared>, measure_from: Instant, end: Instant) -> Vec<u32> {
    let spec = &shared.spec;
    let mut lat = Vec::new();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let period = spec.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        // The moment this request counts from: when it was due if the connection was
        // still busy then (queueing is the proxy's), else when the timer woke us (its
        // millisecond granularity is the generator's, not the proxy's).
        let due = match period {
            Some(p) if now >= measure_from => {
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                let due = measure_from + p.mul_f64(i as f64);
                if due >= end {
                    break;
                }
                if due > now {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                } else {
                    due
                }
            }
            _ => now,
        };
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(&shared).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    shared.error(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match request(s, spec).await {
            Ok(()) => {
                let done = Instant::now();
                if due >= measure_from && done <= end {
                    let us = done.duration_since(due).as_micros();
                    lat.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
                if spec.fresh {
                    // Dropping the sender ends hyper's connection task, which drops
                    // the stream: a reset (zero linger), before the next handshake.
                    sender = None;
                }
            }
            Err(e) => {
                if due >= measure_from {
                    shared.error(&e);
                }
                sender = None;
            }
        }
    }
    lat
}

async fn request(s: &mut SendRequest<Full<Bytes>>, spec: &LoadSpec) -> Result<()> {
    s.ready().await?;
    let body = spec.body.map(|n| Bytes::from(vec![b'b'; n]));
    let req = http::Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(&spec.path)
        .header(http::header::HOST, spec.authority())
        .body(Full::new(body.unwrap_or_default()))?;
    let resp = s.send_request(req).await?;
    ensure!(resp.status().is_success(), "status {}", resp.status());
    resp.into_body().collect().await?;
    Ok(())
}

async fn connect(shared: &Shared) -> Result<SendRequest<Full<Bytes>>> {
    let spec = &shared.spec;
    let to = spec.proxy.unwrap_or(spec.connect_to);
    let mut tcp = TcpStream::connect(to)
        .await
        .with_context(|| format!("connect {to}"))?;
    tcp.set_nodelay(true)?;
    if spec.fresh {
        // Thousands of client-closed connections a second to one address would fill
        // the port range with TIME_WAIT; a reset leaves none.
        tcp.set_zero_linger()?;
    }
    if spec.proxy.is_some() {
        let target = if spec.connect_by_name {
            format!("{}:{}", spec.host, spec.port)
        } else {
            spec.connect_to.to_string()
        };
        proxy_connect(&mut tcp, &target).await?;
    }
    let tls = shared
        .tls
        .connect(shared.server_name.clone(), tcp)
        .await
        .with_context(|| format!("TLS handshake with {} via {to}", spec.host))?;
    let (sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `CONNECT target` on an explicit proxy; reads the reply head byte by byte so nothing
/// of the tunnel is consumed.
async fn proxy_connect(tcp: &mut TcpStream, target: &str) -> Result<()> {
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .context("send CONNECT")?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            bail!("CONNECT reply head too long");
        }
        head.push(tcp.read_u8().await.context("read CONNECT reply")?);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    ensure!(status == "200", "proxy refused CONNECT {target}: {head}");
    Ok(())
}
