//! Servers that record what they saw, so tests assert on the receiving side too.
//!
//! Each server is a thread that entered a World's namespace before creating its socket;
//! the socket is non-blocking and the thread polls it together with a stop socket, so
//! stopping is immediate and, once joined, nothing holds the namespace any more.
//! Constructors return only after the socket is bound (the readiness signal).

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::netns::Netns;

/// An append-only record shared between a server thread and the test.
#[derive(Debug)]
pub struct Seen<T> {
    items: Mutex<Vec<T>>,
    changed: Condvar,
}

impl<T: Clone + std::fmt::Debug> Seen<T> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            items: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        })
    }

    fn push(&self, item: T) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(item);
        self.changed.notify_all();
    }

    /// Everything recorded so far.
    pub fn snapshot(&self) -> Vec<T> {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `pred` holds for the record and returns it. When `timeout` passes
    /// first it is an error naming `what` was awaited and holding the record: a caller
    /// cannot mistake a timeout for the state it waited for.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[T]) -> bool,
    ) -> Result<Vec<T>> {
        let deadline = Instant::now() + timeout;
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        while !pred(&items) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out after {timeout:?} waiting for {what}; seen: {items:?}");
            }
            items = self
                .changed
                .wait_timeout(items, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(items.clone())
    }
}

/// The stop side of a server thread; the World keeps one per server and stops all of
/// them before deleting the namespaces.
#[derive(Debug)]
pub struct ServerStop {
    what: String,
    stop: Mutex<Option<UnixStream>>,
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
}

impl ServerStop {
    /// Stops the thread and joins it. Idempotent; reports a failed or panicked thread.
    pub fn stop(&self) -> Result<()> {
        // Dropping our end makes the thread's end readable (EOF): it returns.
        drop(self.stop.lock().unwrap_or_else(|e| e.into_inner()).take());
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        match handle.map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e.context(format!("{} failed", self.what))),
            Some(Err(_)) => bail!("{} panicked", self.what),
        }
    }
}

/// A TCP listener that answers each connection with one line and records peers.
#[derive(Debug, Clone)]
pub struct TcpServer {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    seen: Arc<Seen<SocketAddr>>,
}

impl TcpServer {
    /// The peers that connected so far.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.seen.snapshot()
    }

    /// Waits until at least `n` peers connected and returns all peers; an error when
    /// `timeout` passes first.
    pub fn wait_peers(&self, n: usize, timeout: Duration) -> Result<Vec<SocketAddr>> {
        let what = format!("{n} peer(s) at tcp server {}", self.addr);
        self.seen.wait_until(&what, timeout, |p| p.len() >= n)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address as a probe names it (no brackets).
    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }
}

/// One received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Sender.
    pub peer: SocketAddr,
    /// Payload (lossy UTF-8).
    pub payload: String,
}

/// A UDP socket that records every datagram it receives.
#[derive(Debug, Clone)]
pub struct UdpServer {
    /// The bound address.
    pub addr: SocketAddr,
    seen: Arc<Seen<Datagram>>,
}

impl UdpServer {
    /// The datagrams received so far.
    pub fn datagrams(&self) -> Vec<Datagram> {
        self.seen.snapshot()
    }

    /// Payloads received so far.
    pub fn payloads(&self) -> Vec<String> {
        self.datagrams().into_iter().map(|d| d.payload).collect()
    }

    /// Waits until a datagram with this payload arrived and returns all datagrams; an
    /// error when `timeout` passes first.
    pub fn wait_payload(&self, payload: &str, timeout: Duration) -> Result<Vec<Datagram>> {
        let what = format!("payload {payload:?} at udp server {}", self.addr);
        self.seen
            .wait_until(&what, timeout, |d| d.iter().any(|x| x.payload == payload))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address as a probe names it (no brackets).
    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }
}

/// Starts a TCP server bound to `addr` inside `ns`.
pub fn start_tcp(
    ns: &Netns,
    addr: SocketAddr,
    greeting: String,
) -> Result<(TcpServer, ServerStop)> {
    let seen = Seen::new();
    let record = seen.clone();
    start(
        ns,
        format!("tcp server {addr} in {}", ns.name()),
        move |stop, ready| {
            let listener = TcpListener::bind(addr).with_context(|| format!("bind tcp {addr}"))?;
            listener.set_nonblocking(true)?;
            ready(listener.local_addr()?);
            serve(&stop, listener.as_fd(), || {
                loop {
                    match listener.accept() {
                        Ok((mut conn, peer)) => {
                            record.push(peer);
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                            // The client may already be gone (benchmarks close at once).
                            let _ = conn.write_all(greeting.as_bytes());
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                        Err(e) => return Err(anyhow!(e).context("accept")),
                    }
                }
            })
        },
    )
    .map(|(bound, stop)| (TcpServer { addr: bound, seen }, stop))
}

/// Starts a UDP receiver bound to `addr` inside `ns`.
pub fn start_udp(ns: &Netns, addr: SocketAddr) -> Result<(UdpServer, ServerStop)> {
    let seen = Seen::new();
    let record = seen.clone();
    start(
        ns,
        format!("udp server {addr} in {}", ns.name()),
        move |stop, ready| {
            let sock = UdpSocket::bind(addr).with_context(|| format!("bind udp {addr}"))?;
            sock.set_nonblocking(true)?;
            ready(sock.local_addr()?);
            let mut buf = vec![0u8; 65536];
            serve(&stop, sock.as_fd(), || {
                loop {
                    match sock.recv_from(&mut buf) {
                        Ok((n, peer)) => record.push(Datagram {
                            peer,
                            payload: String::from_utf8_lossy(&buf[..n]).into_owned(),
                        }),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                        // ICMP errors from earlier sends surface here; they are not ours to judge.
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                        Err(e) => return Err(anyhow!(e).context("recv_from")),
                    }
                }
            })
        },
    )
    .map(|(bound, stop)| (UdpServer { addr: bound, seen }, stop))
}

type Ready = Box<dyn FnOnce(SocketAddr) + Send>;

/// Spawns the thread, waits for `body` to call `ready` (bound) or fail.
fn start<F>(ns: &Netns, what: String, body: F) -> Result<(SocketAddr, ServerStop)>
where
    F: FnOnce(UnixStream, Ready) -> Result<()> + Send + 'static,
{
    let (ours, theirs) = UnixStream::pair().context("stop socket pair")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let ready: Ready = Box::new(move |a| {
        let _ = tx.send(a);
    });
    let handle = ns.spawn("server", move || body(theirs, ready))?;
    let stop = ServerStop {
        what: what.clone(),
        stop: Mutex::new(Some(ours)),
        thread: Mutex::new(Some(handle)),
    };
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(bound) => Ok((bound, stop)),
        Err(_) => {
            let err = stop
                .stop()
                .err()
                .unwrap_or_else(|| anyhow!("never became ready"));
            Err(err.context(format!("start {what}")))
        }
    }
}

/// Polls the socket and the stop socket; calls `drain` whenever the socket is readable,
/// returns when the stop socket is readable (its peer was dropped).
fn serve(
    stop: &UnixStream,
    sock: std::os::fd::BorrowedFd<'_>,
    mut drain: impl FnMut() -> Result<()>,
) -> Result<()> {
    loop {
        let mut fds = [
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            PollFd::new(sock, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(anyhow!(e).context("poll")),
        }
        if fds[0].any().unwrap_or(true) {
            return Ok(());
        }
        if fds[1].any().unwrap_or(false) {
            drain()?;
        }
    }
}
