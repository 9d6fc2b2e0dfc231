//! Asking the upstream resolvers: a fresh connected UDP socket and a fresh random id per
//! attempt, datagrams that do not answer the query ignored, TCP when the answer is
//! truncated, the next upstream when one fails.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::proxy::POLL_INTERVAL;
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
    #[error("the DNS proxy is stopping")]
    Stopped,
}

/// What every attempt needs.
pub struct Ask<'a> {
    pub query: &'a Query,
    pub timeout: Duration,
    pub ttl: TtlBounds,
    pub stop: &'a AtomicBool,
}

/// Asks `upstreams` in order and returns the first answer that is not SERVFAIL; the last
/// error when none gives one. Each attempt (UDP, then TCP if truncated) gets `timeout`.
pub fn resolve(ask: &Ask<'_>, upstreams: &[SocketAddr]) -> Result<FilteredAnswer, UpstreamError> {
    let mut last = UpstreamError::NoUpstreams;
    for &upstream in upstreams {
        let got = ask_udp(ask, upstream).and_then(|answer| {
            if answer.truncated {
                ask_tcp(ask, upstream)
            } else {
                Ok(answer)
            }
        });
        match got {
            Ok(answer) if answer.rcode != Rcode::ServFail => return Ok(answer),
            Ok(_) => last = UpstreamError::ServFail { upstream },
            Err(UpstreamError::Stopped) => return Err(UpstreamError::Stopped),
            Err(e) => {
                tracing::debug!(error = %e, "upstream DNS attempt failed");
                last = e;
            }
        }
    }
    Err(last)
}

fn ask_udp(ask: &Ask<'_>, upstream: SocketAddr) -> Result<FilteredAnswer, UpstreamError> {
    let io_err = |op| {
        move |source| UpstreamError::Io {
            op,
            upstream,
            source,
        }
    };
    let local: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((local, 0)).map_err(io_err("binding a UDP socket"))?;
    // Connected: the kernel drops datagrams from any other address, and an ICMP port
    // unreachable fails the attempt at once instead of after the timeout.
    sock.connect(upstream)
        .map_err(io_err("connecting a UDP socket"))?;
    let id = random_id();
    sock.send(&ask.query.upstream_query(id))
        .map_err(io_err("sending the query"))?;

    let deadline = Instant::now() + ask.timeout;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let slice = slice(ask, deadline).ok_or_else(|| timed_out(ask, upstream, "udp"))?;
        sock.set_read_timeout(Some(slice?))
            .map_err(io_err("setting a read timeout"))?;
        match sock.recv(&mut buf) {
            Ok(n) => match filter_answer(ask.query, id, &buf[..n], ask.ttl) {
                Ok(answer) => return Ok(answer),
                Err(source @ AnswerError::Encode { .. }) => {
                    return Err(UpstreamError::Answer { upstream, source });
                }
                // Spoofed, stale or garbled: keep waiting for the real reply.
                Err(e) => tracing::debug!(%upstream, error = %e, "ignored an upstream datagram"),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(io_err("receiving the answer")(source)),
        }
    }
}

fn ask_tcp(ask: &Ask<'_>, upstream: SocketAddr) -> Result<FilteredAnswer, UpstreamError> {
    let io_err = |op| {
        move |source| UpstreamError::Io {
            op,
            upstream,
            source,
        }
    };
    let deadline = Instant::now() + ask.timeout;
    let mut stream = TcpStream::connect_timeout(&upstream, ask.timeout)
        .map_err(io_err("connecting over TCP"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_write_timeout(Some(left))
        .map_err(io_err("setting a write timeout"))?;
    stream
        .set_read_timeout(Some(POLL_INTERVAL))
        .map_err(io_err("setting a read timeout"))?;
    let id = random_id();
    write_frame(&mut stream, &ask.query.upstream_query(id))
        .map_err(io_err("sending the query over TCP"))?;
    let reply = match read_frame(&mut stream, deadline, ask.stop) {
        Ok(Some(reply)) => reply,
        Ok(None) => {
            return Err(UpstreamError::Frame {
                upstream,
                source: FrameError::Truncated,
            });
        }
        Err(FrameError::Stopped) => return Err(UpstreamError::Stopped),
        Err(FrameError::TimedOut) => return Err(timed_out(ask, upstream, "tcp")),
        Err(source) => return Err(UpstreamError::Frame { upstream, source }),
    };
    // Over TCP nobody else can inject into the stream: a mismatch is a failure.
    filter_answer(ask.query, id, &reply, ask.ttl)
        .map_err(|source| UpstreamError::Answer { upstream, source })
}

/// How long the next read may block: at most [`POLL_INTERVAL`], `None` past the deadline,
/// `Some(Err(Stopped))` once the proxy stops.
fn slice(ask: &Ask<'_>, deadline: Instant) -> Option<Result<Duration, UpstreamError>> {
    if ask.stop.load(Ordering::Relaxed) {
        return Some(Err(UpstreamError::Stopped));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then(|| Ok(left.min(POLL_INTERVAL)))
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
    let bits = RandomState::new().hash_one(Instant::now());
    (bits & 0xffff) as u16
}
