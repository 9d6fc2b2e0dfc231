//! An authoritative test DNS server on the World's internet side: what cork's DNS proxy
//! uses as its upstream.
//!
//! ```ignore
//! let zone = Zone::new()
//!     .a("api.example.test", "198.51.100.10", 300)
//!     .cname("www.example.test", "api.example.test", 60)
//!     .https("api.example.test", true);
//! let dns = world.dns_server("198.51.100.53:53", zone)?; // UDP and TCP, bound on return
//! // ... run the bottle ...
//! assert_eq!(dns.queries(), [("www.example.test".into(), "A".into(), "udp")]);
//! ```
//!
//! Answers: CNAMEs inside the zone are followed (each CNAME, then the target's records, in
//! the answer section; the first owner keeps the question's spelling); a query name the
//! zone does not hold gets NXDOMAIN (as does a chain that ends at such a name, RFC 6604);
//! a held name without records of the asked type gets NOERROR and no answers. Replies
//! echo the id, the question and RD, and set AA. Over UDP a reply larger than 512 bytes
//! (or the query's EDNS payload size) is sent truncated (TC, no records); over TCP each
//! message has the 2-byte length prefix and a connection may carry several queries.
//!
//! Like the servers in [`crate::server`], the server is one thread that entered the
//! internet netns before creating its sockets; it polls them together with a stop socket.
//! It is stopped and joined when the last [`DnsServer`] handle is dropped.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::svcb::{Alpn, EchConfigList, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, SVCB, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::addr::check_ip;
use crate::netns::Netns;

/// The TTL of records added with [`Zone::https`].
pub const HTTPS_TTL: u32 = 300;

/// The `ech` SvcParam value [`Zone::https`] puts in when asked (an ECHConfigList with a
/// 2-byte length prefix and recognisable, meaningless contents).
pub const ECH_CONFIG: &[u8] = b"\x00\x0dECH-TEST-ONLY";

/// The largest UDP reply sent to a query without EDNS (RFC 1035).
const UDP_PLAIN_MAX: usize = 512;
/// The largest UDP reply sent whatever EDNS size the query advertised.
const UDP_EDNS_MAX: usize = 4096;
/// The longest CNAME chain followed.
const MAX_CHAIN: usize = 16;

/// The records a [`DnsServer`] is authoritative for. Names must end in `.test` (a trailing
/// dot is optional, case does not matter); addresses must be test addresses. A mistake is
/// kept and reported by [`crate::World::dns_server`].
#[derive(Debug, Clone, Default)]
pub struct Zone {
    records: Vec<Record>,
    error: Option<String>,
}

impl Zone {
    /// An empty zone: every name is NXDOMAIN.
    pub fn new() -> Self {
        Self::default()
    }

    /// An `A` record.
    pub fn a(self, name: &str, ip: &str, ttl: u32) -> Self {
        self.add(name, ttl, || match parse_ip(ip)? {
            IpAddr::V4(a) => Ok(RData::A(A(a))),
            IpAddr::V6(_) => bail!("A record for {name} with IPv6 address {ip}"),
        })
    }

    /// An `AAAA` record.
    pub fn aaaa(self, name: &str, ip: &str, ttl: u32) -> Self {
        self.add(name, ttl, || match parse_ip(ip)? {
            IpAddr::V6(a) => Ok(RData::AAAA(AAAA(a))),
            IpAddr::V4(_) => bail!("AAAA record for {name} with IPv4 address {ip}"),
        })
    }

    /// A `CNAME` record; `target` is followed when it is in the zone.
    pub fn cname(self, name: &str, target: &str, ttl: u32) -> Self {
        self.add(name, ttl, || Ok(RData::CNAME(CNAME(test_name(target)?))))
    }

    /// A `TXT` record with one string.
    pub fn txt(self, name: &str, text: &str, ttl: u32) -> Self {
        self.add(name, ttl, || {
            Ok(RData::TXT(TXT::new(vec![text.to_owned()])))
        })
    }

    /// An `HTTPS` record (TTL [`HTTPS_TTL`]): priority 1, target `.`, `alpn=h2`, and with
    /// `with_ech` an `ech` SvcParam (key 5) holding [`ECH_CONFIG`].
    pub fn https(self, name: &str, with_ech: bool) -> Self {
        self.add(name, HTTPS_TTL, || {
            let mut params = vec![(
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(vec!["h2".to_owned()])),
            )];
            if with_ech {
                params.push((
                    SvcParamKey::EchConfigList,
                    SvcParamValue::EchConfigList(EchConfigList(ECH_CONFIG.to_vec())),
                ));
            }
            Ok(RData::HTTPS(HTTPS(SVCB::new(1, Name::root(), params))))
        })
    }

    fn add(mut self, name: &str, ttl: u32, rdata: impl FnOnce() -> Result<RData>) -> Self {
        if self.error.is_some() {
            return self;
        }
        match test_name(name).and_then(|owner| Ok(Record::from_rdata(owner, ttl, rdata()?))) {
            Ok(record) => self.records.push(record),
            Err(e) => self.error = Some(format!("zone record for {name:?}: {e:#}")),
        }
        self
    }

    /// The records in the order they were added.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    fn check(&self) -> Result<()> {
        match &self.error {
            Some(e) => bail!("{e}"),
            None => Ok(()),
        }
    }

    fn holds(&self, name: &Name) -> bool {
        self.records.iter().any(|r| r.name == *name)
    }

    /// The reply to one parsed query.
    fn answer(&self, query: &Message) -> Message {
        let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
        reply.metadata.authoritative = true;
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.checking_disabled = query.metadata.checking_disabled;
        reply.queries = query.queries.clone();
        if query.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(UDP_EDNS_MAX as u16);
            reply.edns = Some(edns);
        }
        if query.metadata.op_code != OpCode::Query {
            reply.metadata.response_code = ResponseCode::NotImp;
            return reply;
        }
        let [question] = query.queries.as_slice() else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply;
        };
        if question.query_class() != DNSClass::IN {
            reply.metadata.response_code = ResponseCode::Refused;
            return reply;
        }
        let qtype = question.query_type();
        let mut name = lower(question.name());
        // The first owner is spelled as asked (case randomisation survives).
        let mut owner = question.name().clone();
        let mut seen = HashSet::new();
        let mut exists = self.holds(&name);
        while exists && seen.insert(name.clone()) && seen.len() <= MAX_CHAIN {
            let at: Vec<&Record> = self.records.iter().filter(|r| r.name == name).collect();
            let matching: Vec<&&Record> = at
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .collect();
            let cname = at.iter().find_map(|r| match &r.data {
                RData::CNAME(CNAME(target)) => Some((*r, target)),
                _ => None,
            });
            match cname {
                Some((record, target)) if matching.is_empty() => {
                    let mut record = (*record).clone();
                    record.name = owner;
                    reply.answers.push(record);
                    name = lower(target);
                    owner = name.clone();
                    exists = self.holds(&name);
                }
                _ => {
                    for record in matching {
                        let mut record = (**record).clone();
                        record.name = owner.clone();
                        reply.answers.push(record);
                    }
                    break;
                }
            }
        }
        if !exists {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        reply
    }
}

fn parse_ip(text: &str) -> Result<IpAddr> {
    let ip: IpAddr = text
        .parse()
        .with_context(|| format!("parse address {text:?}"))?;
    check_ip(ip)
}

/// Parses a `.test` name into its lowercase FQDN.
fn test_name(text: &str) -> Result<Name> {
    let fqdn = if text.ends_with('.') {
        text.to_owned()
    } else {
        format!("{text}.")
    };
    if !fqdn.to_ascii_lowercase().ends_with(".test.") {
        bail!("name {text:?} does not end in .test");
    }
    let name = Name::from_ascii(&fqdn).with_context(|| format!("parse name {text:?}"))?;
    Ok(lower(&name))
}

fn lower(name: &Name) -> Name {
    let mut n = name.to_lowercase();
    n.set_fqdn(true);
    n
}

/// One query the server received: the name (lowercase, no trailing dot), the type
/// (`"A"`, `"AAAA"`, `"HTTPS"`, ...), and the transport (`"udp"` or `"tcp"`). A message
/// that could not be parsed is recorded as `("", "", transport)`.
pub type QueryRecord = (String, String, &'static str);

#[derive(Debug, Default)]
struct Shared {
    queries: Mutex<Vec<QueryRecord>>,
    changed: Condvar,
    silent: AtomicBool,
}

impl Shared {
    fn record(&self, q: QueryRecord) {
        self.queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(q);
        self.changed.notify_all();
    }
}

#[derive(Debug)]
struct Handle {
    what: String,
    stop: Mutex<Option<UnixStream>>,
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
}

impl Handle {
    fn stop(&self) -> Result<()> {
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

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("cork-integration: {e:#}");
        }
    }
}

/// A running authoritative DNS server (UDP and TCP on one address). Clones share the
/// server; the last one dropped stops and joins its thread.
#[derive(Debug, Clone)]
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: Arc<Handle>,
}

impl DnsServer {
    /// Every query received so far, in order (also while silent).
    pub fn queries(&self) -> Vec<QueryRecord> {
        self.shared
            .queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least `n` queries were received and returns all of them; an error
    /// naming what was awaited when `timeout` passes first.
    pub fn wait_queries(&self, n: usize, timeout: Duration) -> Result<Vec<QueryRecord>> {
        let deadline = Instant::now() + timeout;
        let mut items = self
            .shared
            .queries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while items.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "timed out after {timeout:?} waiting for {n} queries at dns server {}; \
                     received: {:?}",
                    self.addr,
                    *items
                );
            }
            items = self
                .shared
                .changed
                .wait_timeout(items, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(items.clone())
    }

    /// While silent, queries are recorded but never answered (an upstream that times out).
    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.store(silent, Ordering::SeqCst);
    }

    /// The bound address (UDP and TCP share it).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as a manifest or probe names it (no brackets).
    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops and joins the server now (dropping the last handle does the same), reporting
    /// a failed thread. Idempotent.
    pub fn stop(&self) -> Result<()> {
        self.handle.stop()
    }
}

/// Starts a DNS server for `zone` bound to `addr` (UDP, then TCP on the same port) inside
/// `ns`; returns once both sockets are bound. Prefer [`crate::World::dns_server`], which
/// also adds the address to the internet side.
pub fn start(ns: &Netns, addr: SocketAddr, zone: Zone) -> Result<DnsServer> {
    check_ip(addr.ip())?;
    zone.check()?;
    let what = format!("dns server {addr} in {}", ns.name());
    let shared = Arc::new(Shared::default());
    let state = shared.clone();
    let (ours, theirs) = UnixStream::pair().context("stop socket pair")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = ns.spawn("dns-server", move || {
        let udp = UdpSocket::bind(addr).with_context(|| format!("bind udp {addr}"))?;
        let bound = udp.local_addr()?;
        let tcp = TcpListener::bind(bound).with_context(|| format!("bind tcp {bound}"))?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let _ = tx.send(bound);
        Server {
            zone,
            shared: state,
            udp,
            tcp,
            conns: Vec::new(),
        }
        .run(&theirs)
    })?;
    let handle = Arc::new(Handle {
        what: what.clone(),
        stop: Mutex::new(Some(ours)),
        thread: Mutex::new(Some(thread)),
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(bound) => Ok(DnsServer {
            addr: bound,
            shared,
            handle,
        }),
        Err(_) => {
            let err = handle
                .stop()
                .err()
                .unwrap_or_else(|| anyhow!("never became ready"));
            Err(err.context(format!("start {what}")))
        }
    }
}

/// One TCP client connection and the bytes of its unfinished message.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Server {
    zone: Zone,
    shared: Arc<Shared>,
    udp: UdpSocket,
    tcp: TcpListener,
    conns: Vec<Conn>,
}

impl Server {
    fn run(mut self, stop: &UnixStream) -> Result<()> {
        loop {
            let ready: Vec<bool> = {
                let mut fds = vec![
                    PollFd::new(stop.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.udp.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.tcp.as_fd(), PollFlags::POLLIN),
                ];
                fds.extend(
                    self.conns
                        .iter()
                        .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
                );
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(anyhow!(e).context("poll")),
                }
                fds.iter().map(|f| f.any().unwrap_or(true)).collect()
            };
            if ready[0] {
                return Ok(());
            }
            // Connections first: accepting below changes the indices.
            let mut keep = Vec::with_capacity(self.conns.len());
            for (conn, ready) in std::mem::take(&mut self.conns).into_iter().zip(&ready[3..]) {
                if !ready {
                    keep.push(conn);
                } else if let Some(conn) = self.read_tcp(conn) {
                    keep.push(conn);
                }
            }
            self.conns = keep;
            if ready[1] {
                self.drain_udp()?;
            }
            if ready[2] {
                self.accept()?;
            }
        }
    }

    fn drain_udp(&self) -> Result<()> {
        let mut buf = vec![0u8; 65536];
        loop {
            match self.udp.recv_from(&mut buf) {
                Ok((n, peer)) => {
                    let Some(reply) = self.handle(&buf[..n], "udp") else {
                        continue;
                    };
                    // The client may be gone; that is its business.
                    let _ = self.udp.send_to(&reply, peer);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(anyhow!(e).context("recv_from")),
            }
        }
    }

    fn accept(&mut self) -> Result<()> {
        loop {
            match self.tcp.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(true)?;
                    self.conns.push(Conn {
                        stream,
                        buf: Vec::new(),
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) => return Err(anyhow!(e).context("accept")),
            }
        }
    }

    /// Reads what the connection has, answers every complete message; `None` closes it.
    fn read_tcp(&self, mut conn: Conn) -> Option<Conn> {
        let mut chunk = [0u8; 4096];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
        while conn.buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([conn.buf[0], conn.buf[1]]));
            if conn.buf.len() < 2 + len {
                break;
            }
            let msg: Vec<u8> = conn.buf.drain(..2 + len).skip(2).collect();
            if let Some(reply) = self.handle(&msg, "tcp") {
                let Ok(len) = u16::try_from(reply.len()) else {
                    return None;
                };
                let mut framed = len.to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                // A reply fits the socket buffer; a client that does not read is dropped.
                let sent = conn.stream.set_nonblocking(false).is_ok()
                    && conn
                        .stream
                        .set_write_timeout(Some(Duration::from_secs(1)))
                        .is_ok()
                    && conn.stream.write_all(&framed).is_ok()
                    && conn.stream.set_nonblocking(true).is_ok();
                if !sent {
                    return None;
                }
            }
        }
        Some(conn)
    }

    /// Records one message and returns the reply to send, if any.
    fn handle(&self, bytes: &[u8], transport: &'static str) -> Option<Vec<u8>> {
        let query = match Message::from_vec(bytes) {
            Ok(q) if q.metadata.message_type == MessageType::Query => q,
            _ => {
                self.shared
                    .record((String::new(), String::new(), transport));
                if self.shared.silent.load(Ordering::SeqCst) || bytes.len() < 2 {
                    return None;
                }
                let id = u16::from_be_bytes([bytes[0], bytes[1]]);
                let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return reply.to_vec().ok();
            }
        };
        let (name, qtype) = match query.queries.first() {
            Some(q) => {
                let name = lower(q.name()).to_ascii();
                let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
                (name, q.query_type().to_string())
            }
            None => (String::new(), String::new()),
        };
        self.shared.record((name, qtype, transport));
        if self.shared.silent.load(Ordering::SeqCst) {
            return None;
        }
        let reply = self.zone.answer(&query);
        let bytes = reply.to_vec().ok()?;
        if transport == "udp" {
            let limit = match &query.edns {
                Some(edns) => usize::from(edns.max_payload()).clamp(UDP_PLAIN_MAX, UDP_EDNS_MAX),
                None => UDP_PLAIN_MAX,
            };
            if bytes.len() > limit {
                return reply.truncate().to_vec().ok();
            }
        }
        Some(bytes)
    }
}
