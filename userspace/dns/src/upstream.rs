//! Asking the upstream resolvers, as a task of the proxy: a fresh connected UDP socket and
//! a fresh random id per attempt, datagrams that do not answer the query ignored, TCP when
//! the answer is truncated, the next upstream when one fails. Each attempt has its own
//! deadline; stopping is the caller's (dropping the future closes the attempt's socket).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use super::tcp::{FrameError, read_frame, write_frame};
use super::{AnswerError, FilteredAnswer, Query, Rcode, TtlBounds, filter_answer};

/// Why no usable answer came from an upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream DNS resolver is configured")]
    NoUpstreams,
    #[error("{op} for upstream DNS resolver {upstream}")]
    Io {
        op: &'static str,
        upstream: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no answer from upstream DNS resolver {upstream} over {transport} within {timeout:?}")]
    TimedOut {
        upstream: SocketAddr,
        transport: &'static str,
        timeout: Duration,
    },
    #[error("reading the TCP answer of upstream DNS resolver {upstream}")]
    Frame {
        upstream: SocketAddr,
        #[source]
        source: FrameError,
    },
    #[error("unusable answer from upstream DNS resolver {upstream}")]
    Answer {
        upstream: SocketAddr,
        #[source]
        source: AnswerError,
    },
    #[error(
        "upstream DNS resolver {upstream} answered SERVFAIL (or an rcode cork does not pass on)"
    )]
    ServFail { upstream: SocketAddr },
}

/// What every attempt needs.
pub struct Ask<'a> {
    pub query: &'a Query,
    pub timeout: Duration,
    pub ttl: TtlBounds,
}

/// Asks `upstreams` in order and returns the first answer that is not SERVFAIL; the last
/// error when none gives one. Each attempt (UDP, then TCP if truncated) gets `timeout`.
pub async fn resolve(
    ask: &Ask<'_>,
    upstreams: &[SocketAddr],
) -> Result<FilteredAnswer, UpstreamError> {
    let mut last = UpstreamError::NoUpstreams;
    for &upstream in upstreams {
        let got = match ask_udp(ask, upstream).await {
            Ok(answer) if answer.truncated => ask_tcp(ask, upstream).await,
            other => other,
        };
        match got {
            Ok(answer) if answer.rcode != Rcode::ServFail => return Ok(answer),
            Ok(_) => last = UpstreamError::ServFail { upstream },
            Err(e) => {
                tracing::debug!(error = %e, "upstream DNS attempt failed");
                last = e;
            }
        }
    }
    Err(last)
}

fn io_err(op: &'static str, upstream: SocketAddr) -> impl FnOnce(io::Error) -> UpstreamError {
    move |source| UpstreamError::Io {
        op,
        upstream,
        source,
    }
}

async fn ask_udp(ask: &Ask<'_>, upstream: SocketAddr) -> Result<FilteredAnswer, UpstreamError> {
    let deadline = Instant::now() + ask.timeout;
    let local: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((local, 0))
        .await
        .map_err(io_err("binding a UDP socket", upstream))?;
    // Connected: the kernel drops datagrams from any other address, and an ICMP port
    // unreachable fails the attempt at once instead of after the timeout.
    sock.connect(upstream)
        .await
        .map_err(io_err("connecting a UDP socket", upstream))?;
    let id = random_id();
    let exchange = async {
        sock.send(&ask.query.upstream_query(id))
            .await
            .map_err(io_err("sending the query", upstream))?;
        let mut buf = vec![0u8; usize::from(u16::MAX)];
        loop {
            let n = match sock.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(io_err("receiving the answer", upstream)(source)),
            };
            match filter_answer(ask.query, id, &buf[..n], ask.ttl) {
                Ok(answer) => return Ok(answer),
                Err(source @ AnswerError::Encode { .. }) => {
                    return Err(UpstreamError::Answer { upstream, source });
                }
                // Spoofed, stale or garbled: keep waiting for the real reply.
                Err(e) => tracing::debug!(%upstream, error = %e, "ignored an upstream datagram"),
            }
        }
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| timed_out(ask, upstream, "udp"))?
}

async fn ask_tcp(ask: &Ask<'_>, upstream: SocketAddr) -> Result<FilteredAnswer, UpstreamError> {
    let deadline = Instant::now() + ask.timeout;
    let exchange = async {
        let mut stream = TcpStream::connect(upstream)
            .await
            .map_err(io_err("connecting over TCP", upstream))?;
        let id = random_id();
        write_frame(&mut stream, &ask.query.upstream_query(id))
            .await
            .map_err(io_err("sending the query over TCP", upstream))?;
        let reply = read_frame(&mut stream)
            .await
            .map_err(|source| UpstreamError::Frame { upstream, source })?
            .ok_or(UpstreamError::Frame {
                upstream,
                source: FrameError::Truncated,
            })?;
        // Over TCP nobody else can inject into the stream: a mismatch is a failure.
        filter_answer(ask.query, id, &reply, ask.ttl)
            .map_err(|source| UpstreamError::Answer { upstream, source })
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| timed_out(ask, upstream, "tcp"))?
}

fn timed_out(ask: &Ask<'_>, upstream: SocketAddr, transport: &'static str) -> UpstreamError {
    UpstreamError::TimedOut {
        upstream,
        transport,
        timeout: ask.timeout,
    }
}

/// A query id an off-path attacker cannot guess: SipHash under the process's random keys
/// (std seeds `RandomState` from the OS and varies the keys per instance). Together with
/// the fresh socket's random source port it is what makes a spoofed answer hard to land.
fn random_id() -> u16 {
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits & 0xffff) as u16
}
