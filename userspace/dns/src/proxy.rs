//! The per-bottle DNS proxy: sockets, threads, and the order of operations per query.
//!
//! The kernel redirects every DNS packet a bottle sends (UDP and TCP port 53, any
//! destination) to this proxy's listeners on 127.0.0.1 and ::1; the port tells which bottle
//! it is. For each message, in order:
//!
//! 1. the bottle's rate limit ([`DnsConfig::queries_per_second`], burst of the same);
//! 2. [`check_query`](super::check_query) — what may be asked at all;
//! 3. [`Policy::match_domain`] — whether this name may be asked;
//! 4. the upstream resolvers, in order (UDP, then TCP when truncated), answers filtered by
//!    [`super::filter_answer`];
//! 5. every address in the answer goes into the kernel through the [`Learner`] **before**
//!    the reply is sent, so the bottle's first connect to it is already allowed;
//! 6. the reply, and one [`DnsQueryEvent`](super::DnsQueryEvent) audit line per message.
//!
//! A refused name gets REFUSED rather than NXDOMAIN: the name may well exist, and a
//! client that negative-caches NXDOMAIN would keep believing it does not after the policy
//! changes; REFUSED tells the agent (and its operator) that a policy said no.
//!
//! Threads: one poll thread watches the four sockets with a [`POLL_INTERVAL`] timeout and
//! a stop flag; each allowed UDP query and each TCP connection runs on its own short-lived
//! thread (bounded by [`MAX_UDP_IN_FLIGHT`] and [`MAX_TCP_CONNECTIONS`]), which the poll
//! thread joins. Every blocking call waits at most [`POLL_INTERVAL`] before checking the
//! stop flag, so [`RunningDnsProxy::stop`] returns promptly.
//!
//! The proxy's own upstream sockets are ordinary sockets of the agent: the agent must
//! stay outside the bottle's cgroup, or its queries would be redirected back to itself.
//!
//! [`DnsConfig::queries_per_second`]: cork_policy::DnsConfig::queries_per_second

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cork_policy::{Policy, Slot};

use super::TtlBounds;
use super::rate::TokenBucket;
use cork_audit::AuditSink;

mod decide;
mod serve;

#[cfg(test)]
mod tests;

/// Longest a thread of the proxy blocks before it looks at the stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A TCP connection with no complete message for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connections served at once; more are closed on accept.
pub const MAX_TCP_CONNECTIONS: usize = 8;
/// Allowed UDP queries waiting on upstream at once; more get SERVFAIL (`overloaded`).
pub const MAX_UDP_IN_FLIGHT: usize = 64;
/// How long a reply write to a TCP client may block.
const TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts at finding a port free on both loopback addresses.
const BIND_ATTEMPTS: usize = 8;

/// What the proxy of one bottle needs.
#[derive(Debug, Clone)]
pub struct DnsProxyConfig {
    /// The bottle's name, for audit events.
    pub bottle: String,
    /// Decides names ([`Policy::match_domain`]), the slots learned addresses get
    /// ([`Policy::allowed_slots`]), TTL bounds and the query rate (`policy.dns`).
    pub policy: Arc<Policy>,
    /// Resolvers, tried in order; must not be empty (every allowed query would fail).
    pub upstreams: Vec<SocketAddr>,
    /// Per attempt (UDP, and TCP again when the UDP answer is truncated), e.g. 2 s.
    pub upstream_timeout: Duration,
    /// Every (name, address) answered to the bottle, for the inspecting proxy's check
    /// that a flow goes where its name resolved.
    pub resolved: Arc<super::Resolved>,
}

/// Installs learned addresses in the kernel; cork's map code in production, a fake in
/// tests. Called before the reply carrying the address is sent.
pub trait Learner: Send + Sync {
    /// Allow `addr` for `slots` (from [`Policy::allowed_slots`]) for `ttl` seconds.
    /// `Err` = could not install: the bottle gets SERVFAIL and the audit event says
    /// `learn_failed` (addresses of the same answer learned before stay learned).
    fn learn(&self, addr: IpAddr, slots: &[Slot], ttl: u32) -> Result<(), LearnFailed>;
}

/// Why a [`Learner`] could not install an address (its own typed error, boxed: the
/// learner lives in a layer above this crate).
pub type LearnFailed = Box<dyn std::error::Error + Send + Sync>;

/// Why a listener could not be bound (inside the `io::Error` [`BoundDnsProxy::bind`] returns).
#[derive(Debug, thiserror::Error)]
#[error("binding the DNS proxy's {proto} listener on {addr}")]
pub struct BindError {
    pub proto: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// The proxy's four sockets, bound, with no thread yet.
#[derive(Debug)]
pub struct BoundDnsProxy {
    port: u16,
    udp: [Arc<UdpSocket>; 2],
    tcp: [TcpListener; 2],
}

impl BoundDnsProxy {
    /// Binds UDP and TCP on `127.0.0.1:port` and `[::1]:port`, the same port for all four.
    /// Port 0 picks a free port: the first socket gets one from the kernel and the others
    /// reuse it, starting over (a few times) when one of them finds it taken.
    pub fn bind(port: u16) -> io::Result<BoundDnsProxy> {
        let mut attempt = 1;
        loop {
            match Self::bind_once(port) {
                Err(e) if port == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                    if attempt == BIND_ATTEMPTS {
                        return Err(e);
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn bind_once(port: u16) -> io::Result<BoundDnsProxy> {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let udp4 = bind_udp(SocketAddr::new(v4, port))?;
        let port = udp4.local_addr()?.port();
        let tcp4 = bind_tcp(SocketAddr::new(v4, port))?;
        let udp6 = bind_udp(SocketAddr::new(v6, port))?;
        let tcp6 = bind_tcp(SocketAddr::new(v6, port))?;
        Ok(BoundDnsProxy {
            port,
            udp: [Arc::new(udp4), Arc::new(udp6)],
            tcp: [tcp4, tcp6],
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts serving. Call after the bottled command is forked: the agent must be
    /// single-threaded at fork.
    pub fn start(
        self,
        cfg: DnsProxyConfig,
        learner: Arc<dyn Learner>,
        sink: Arc<Mutex<AuditSink>>,
        names: Arc<Mutex<HashMap<IpAddr, String>>>,
    ) -> RunningDnsProxy {
        self.start_with_clock(cfg, learner, sink, names, Arc::new(Instant::now))
    }

    /// [`BoundDnsProxy::start`] with the query budget reading time from `clock`.
    fn start_with_clock(
        self,
        cfg: DnsProxyConfig,
        learner: Arc<dyn Learner>,
        sink: Arc<Mutex<AuditSink>>,
        names: Arc<Mutex<HashMap<IpAddr, String>>>,
        clock: Clock,
    ) -> RunningDnsProxy {
        let dns = &cfg.policy.dns;
        let shared = Arc::new(Shared {
            ttl: TtlBounds {
                min: dns.min_ttl,
                max: dns.max_ttl,
            },
            rate: Mutex::new(TokenBucket::new(dns.queries_per_second, clock())),
            clock,
            cfg,
            learner,
            sink,
            names,
            stop: AtomicBool::new(false),
        });
        let port = self.port;
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("cork-dns-{port}"))
            .spawn(move || serve::serve(&serving, &self))
            .map_err(|e| tracing::error!(error = %e, "spawning the DNS proxy thread"))
            .ok();
        RunningDnsProxy {
            port,
            shared,
            thread,
        }
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let wrap = |source: io::Error| {
        io::Error::new(
            source.kind(),
            BindError {
                proto: "UDP",
                addr,
                source,
            },
        )
    };
    let sock = UdpSocket::bind(addr).map_err(wrap)?;
    sock.set_nonblocking(true).map_err(wrap)?;
    Ok(sock)
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let wrap = |source: io::Error| {
        io::Error::new(
            source.kind(),
            BindError {
                proto: "TCP",
                addr,
                source,
            },
        )
    };
    let listener = TcpListener::bind(addr).map_err(wrap)?;
    listener.set_nonblocking(true).map_err(wrap)?;
    Ok(listener)
}

/// A serving proxy. Dropping it (or [`RunningDnsProxy::stop`]) stops and joins every thread;
/// queries in flight are dropped unanswered.
#[derive(Debug)]
pub struct RunningDnsProxy {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningDnsProxy {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops every thread and waits for them (within about [`POLL_INTERVAL`], plus a TCP
    /// connect to an upstream already under way).
    pub fn stop(self) {}
}

impl Drop for RunningDnsProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(port = self.port, "the DNS proxy thread panicked");
        }
    }
}

/// Where the query budget reads the time: `Instant::now`, or a test's clock, so that a
/// test decides when tokens refill instead of racing the wall clock.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// What every thread of one proxy shares.
struct Shared {
    cfg: DnsProxyConfig,
    learner: Arc<dyn Learner>,
    sink: Arc<Mutex<AuditSink>>,
    names: Arc<Mutex<HashMap<IpAddr, String>>>,
    rate: Mutex<TokenBucket>,
    clock: Clock,
    ttl: TtlBounds,
    stop: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("bottle", &self.cfg.bottle)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}
