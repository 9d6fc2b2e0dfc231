//! The per-bottle DNS proxy: sockets, tasks, and the order of operations per query.
//!
//! The kernel redirects every DNS packet a bottle sends (UDP and TCP port 53, any
//! destination) to this proxy's listeners on 127.0.0.1 and ::1; the port tells which bottle
//! it is. For each message, in order:
//!
//! 1. the bottle's rate limit ([`DnsConfig::queries_per_second`], burst of the same);
//! 2. [`check_query`](super::check_query) — what may be asked at all;
//! 3. [`Policy::match_domain`](cork_policy::Policy::match_domain) — whether this name may be asked;
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
//! Tasks, on the agent's one tokio runtime (the caller's; a daemon's many bottles share
//! it): one receive loop per UDP socket and one accept loop per TCP listener. Each allowed
//! UDP query and each TCP connection is a task in its loop's own [`JoinSet`], bounded by
//! [`MAX_UDP_IN_FLIGHT`] and [`MAX_TCP_CONNECTIONS`] (each shared by both address
//! families). [`RunningDnsProxy::stop`] raises a stop signal that every wait of every task
//! races: the loops stop receiving and accepting, a query waiting on upstream is audited
//! `proxy_stopped` and dropped unanswered, a TCP connection is closed; each loop ends when
//! its set is empty, and `stop` returns when every loop has ended (a task that does not,
//! within [`STOP_GRACE`], is aborted with its loop's set).
//!
//! The [`Learner`] is called synchronously from a task: it is one map update in the
//! kernel, microseconds, and the reply must wait for it anyway.
//!
//! The proxy's own upstream sockets are ordinary sockets of the agent: the agent must
//! stay outside the bottle's cgroup, or its queries would be redirected back to itself.
//!
//! [`DnsConfig::queries_per_second`]: cork_policy::DnsConfig::queries_per_second
//! [`JoinSet`]: tokio::task::JoinSet

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cork_audit::AuditSink;
use cork_policy::{LivePolicy, Slot};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::TtlBounds;
use super::rate::{Clock, RateLimit, system_clock};

mod decide;
mod serve;

#[cfg(test)]
mod tests;

/// A TCP connection with no complete message for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connections served at once; more are closed on accept.
pub const MAX_TCP_CONNECTIONS: usize = 8;
/// Allowed UDP queries waiting on upstream at once; more get SERVFAIL (`overloaded`).
pub const MAX_UDP_IN_FLIGHT: usize = 64;
/// How long [`RunningDnsProxy::stop`] waits for the tasks to end before aborting them. Every
/// wait of a task races the stop signal, so only a task stuck in something that does not
/// (a hung audit write) meets this.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a reply write to a TCP client may take.
const TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts at finding a port free on both loopback addresses.
const BIND_ATTEMPTS: usize = 8;

/// What the proxy of one bottle needs.
#[derive(Debug, Clone)]
pub struct DnsProxyConfig {
    /// The bottle's name, for audit events.
    pub bottle: String,
    /// Decides names ([`Policy::match_domain`](cork_policy::Policy::match_domain)), the slots learned addresses get
    /// ([`Policy::allowed_slots`](cork_policy::Policy::allowed_slots)), TTL bounds and the query rate (`policy.dns`). Each
    /// query is decided by the generation in force when it arrives; `[dns]` settings are
    /// the first generation's (an update cannot change them).
    pub policy: Arc<LivePolicy>,
    /// Resolvers, tried in order; must not be empty (every allowed query would fail).
    pub upstreams: Vec<SocketAddr>,
    /// Per attempt (UDP, and TCP again when the UDP answer is truncated), e.g. 2 s.
    pub upstream_timeout: Duration,
    /// Every (name, address) answered to the bottle, recorded after the kernel learned it:
    /// for the inspecting proxy's check that a flow goes where its name resolved, and for
    /// naming the destinations of kernel audit events.
    pub resolved: Arc<super::Resolved>,
}

/// Installs learned addresses in the kernel; cork's map code in production, a fake in
/// tests. Called before the reply carrying the address is sent.
pub trait Learner: Send + Sync {
    /// Allow `addr`, an answer for `name`, for `slots` (from [`Policy::allowed_slots`](cork_policy::Policy::allowed_slots) of
    /// the generation that decided the query) for `ttl` seconds. A learner that follows
    /// policy updates itself may judge `name` again by the generation in force (the
    /// kernel's does). `Err` = could not install: the bottle gets SERVFAIL and the audit
    /// event says `learn_failed` (addresses of the same answer learned before stay learned).
    fn learn(&self, addr: IpAddr, name: &str, slots: &[Slot], ttl: u32) -> Result<(), LearnFailed>;
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

/// The proxy's four sockets, bound (so the port can be given to the bottle's programs
/// before they load), not served yet.
#[derive(Debug)]
pub struct BoundDnsProxy {
    port: u16,
    udp: [UdpSocket; 2],
    tcp: [TcpListener; 2],
}

impl BoundDnsProxy {
    /// Binds UDP and TCP on `127.0.0.1:port` and `[::1]:port`, the same port for all four.
    /// Port 0 picks a free port: the first socket gets one from the kernel and the others
    /// reuse it, starting over (a few times) when one of them finds it taken.
    pub fn bind(port: u16) -> io::Result<BoundDnsProxy> {
        Self::bind_on(Ipv4Addr::LOCALHOST, Ipv6Addr::LOCALHOST, port)
    }

    /// [`BoundDnsProxy::bind`] on other addresses: a VM bottle's gateway addresses, where
    /// nftables DNATs the guest's DNS (the guest is not on this host's loopback).
    pub fn bind_on(v4: Ipv4Addr, v6: Ipv6Addr, port: u16) -> io::Result<BoundDnsProxy> {
        let mut attempt = 1;
        loop {
            match Self::bind_once(IpAddr::V4(v4), IpAddr::V6(v6), port) {
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

    fn bind_once(v4: IpAddr, v6: IpAddr, port: u16) -> io::Result<BoundDnsProxy> {
        let udp4 = bind_udp(SocketAddr::new(v4, port))?;
        let port = udp4.local_addr()?.port();
        let tcp4 = bind_tcp(SocketAddr::new(v4, port))?;
        let udp6 = bind_udp(SocketAddr::new(v6, port))?;
        let tcp6 = bind_tcp(SocketAddr::new(v6, port))?;
        Ok(BoundDnsProxy {
            port,
            udp: [udp4, udp6],
            tcp: [tcp4, tcp6],
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts serving, as tasks on `runtime` (the agent's, shared by every bottle).
    pub fn start(
        self,
        cfg: DnsProxyConfig,
        learner: Arc<dyn Learner>,
        sink: Arc<Mutex<AuditSink>>,
        runtime: &tokio::runtime::Handle,
    ) -> io::Result<RunningDnsProxy> {
        self.start_with_clock(cfg, learner, sink, runtime, system_clock())
    }

    /// [`Self::start`] with the rate limit read against `clock`.
    pub(crate) fn start_with_clock(
        self,
        cfg: DnsProxyConfig,
        learner: Arc<dyn Learner>,
        sink: Arc<Mutex<AuditSink>>,
        runtime: &tokio::runtime::Handle,
        clock: Clock,
    ) -> io::Result<RunningDnsProxy> {
        // Registering the sockets with the runtime's reactor needs its context.
        let _entered = runtime.enter();
        let [udp4, udp6] = self.udp;
        let [tcp4, tcp6] = self.tcp;
        let udp4 = tokio::net::UdpSocket::from_std(udp4)?;
        let udp6 = tokio::net::UdpSocket::from_std(udp6)?;
        let tcp4 = tokio::net::TcpListener::from_std(tcp4)?;
        let tcp6 = tokio::net::TcpListener::from_std(tcp6)?;

        let dns = cfg.policy.current().policy.dns.clone();
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            ttl: TtlBounds {
                min: dns.min_ttl,
                max: dns.max_ttl,
            },
            rate: RateLimit::new(dns.queries_per_second, clock),
            udp_in_flight: Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT)),
            tcp_connections: Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS)),
            cfg,
            learner,
            sink,
            stopped,
        });
        // Each loop holds a sender and never sends: the channel disconnects when the last
        // loop has ended (returned, been aborted, or gone with the runtime).
        let (alive, ended) = mpsc::channel::<()>();
        let loops = vec![
            runtime.spawn(serve::udp_loop(
                Arc::clone(&shared),
                Arc::new(udp4),
                alive.clone(),
            )),
            runtime.spawn(serve::udp_loop(
                Arc::clone(&shared),
                Arc::new(udp6),
                alive.clone(),
            )),
            runtime.spawn(serve::tcp_loop(Arc::clone(&shared), tcp4, alive.clone())),
            runtime.spawn(serve::tcp_loop(shared, tcp6, alive)),
        ];
        Ok(RunningDnsProxy {
            port: self.port,
            stop,
            ended,
            loops,
        })
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

/// A serving proxy. Dropping it (or [`RunningDnsProxy::stop`]) stops every task and waits
/// for them; queries in flight are audited `proxy_stopped` and dropped unanswered.
#[derive(Debug)]
pub struct RunningDnsProxy {
    port: u16,
    stop: watch::Sender<bool>,
    /// Disconnects when every loop task has ended.
    ended: mpsc::Receiver<()>,
    loops: Vec<JoinHandle<()>>,
}

impl RunningDnsProxy {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops every task and waits for them (at most [`STOP_GRACE`]; then they are aborted).
    /// Blocks the calling thread: call it from outside the runtime's worker threads, or on
    /// a runtime with other workers to run the tasks to their end.
    pub fn stop(self) {}
}

impl Drop for RunningDnsProxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        match self.ended.recv_timeout(STOP_GRACE) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
            Err(RecvTimeoutError::Timeout) => tracing::error!(
                port = self.port,
                "DNS proxy tasks still running {STOP_GRACE:?} after stop; aborting them"
            ),
        }
        // Ends a loop that did not end by itself, and with it every task in its set.
        for task in &self.loops {
            task.abort();
        }
    }
}

/// What every task of one proxy shares.
struct Shared {
    cfg: DnsProxyConfig,
    learner: Arc<dyn Learner>,
    sink: Arc<Mutex<AuditSink>>,
    rate: RateLimit,
    ttl: TtlBounds,
    /// Permits for allowed UDP queries waiting on upstream, both families together.
    udp_in_flight: Arc<Semaphore>,
    /// Permits for TCP connections, both families together.
    tcp_connections: Arc<Semaphore>,
    /// Turns true when the proxy stops.
    stopped: watch::Receiver<bool>,
}

impl Shared {
    /// Completes once the proxy is stopping.
    async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        // An error means the sender is gone, which also means stopping.
        let _ = stopped.wait_for(|stop| *stop).await;
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("bottle", &self.cfg.bottle)
            .field("stopped", &*self.stopped.borrow())
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
