//! The fakes and clients the proxy tests share: a resolver on 127.0.0.1:0 that knows a few
//! `*.allowed.test` names, a recording [`Learner`], and a [`Harness`] that owns one proxy,
//! its audit file and its upstream.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cork_policy::{Policy, Slot, parse_manifest};
use hickory_proto::op::{self, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::Value;

use crate::proxy::{BoundDnsProxy, Clock, DnsProxyConfig, LearnFailed, Learner, RunningDnsProxy};
use crate::tcp::write_frame;
use cork_audit::AuditSink;

pub(super) const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

// ---- fake upstream ------------------------------------------------------------------

/// A resolver on 127.0.0.1 that knows a few `*.allowed.test` names.
pub(super) struct FakeUpstream {
    addr: SocketAddr,
    /// Queries received, UDP and TCP.
    asked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    pub(super) fn start() -> Self {
        // The TCP side needs the UDP side's port; retry if another test holds it.
        let (udp, tcp) = (0..16)
            .find_map(|_| {
                let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                let tcp = TcpListener::bind(udp.local_addr().unwrap()).ok()?;
                Some((udp, tcp))
            })
            .expect("a free loopback port for the fake upstream");
        let addr = udp.local_addr().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();

        let (a, s) = (Arc::clone(&asked), Arc::clone(&stop));
        let udp_thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                a.fetch_add(1, Ordering::Relaxed);
                for reply in fake_answers(&buf[..n], false) {
                    udp.send_to(&reply, peer).unwrap();
                }
            }
        });
        let (a, s) = (Arc::clone(&asked), Arc::clone(&stop));
        let tcp_thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = tcp.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                stream.read_exact(&mut msg).unwrap();
                a.fetch_add(1, Ordering::Relaxed);
                if let Some(reply) = fake_answers(&msg, true).pop() {
                    write_frame(&mut stream, &reply).unwrap();
                }
            }
        });
        FakeUpstream {
            addr,
            asked,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    pub(super) fn asked(&self) -> usize {
        self.asked.load(Ordering::Relaxed)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            if t.join().is_err() && !thread::panicking() {
                panic!("fake upstream thread panicked");
            }
        }
    }
}

pub(super) fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn rec(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name(owner), ttl, data)
}

fn a(ip: &str) -> RData {
    RData::A(A(ip.parse().unwrap()))
}

/// The upstream's replies to one query, in the order it sends them (the last is the real
/// one; `spoof.allowed.test` first gets a reply with the wrong id).
fn fake_answers(query: &[u8], tcp: bool) -> Vec<Vec<u8>> {
    let Ok(msg) = Message::from_vec(query) else {
        return Vec::new();
    };
    let Some(q) = msg.queries.first().cloned() else {
        return Vec::new();
    };
    let mut resp = Message::response(msg.metadata.id, OpCode::Query);
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    let qname = q.name().to_string().to_ascii_lowercase();
    let mut out = Vec::new();
    match (qname.as_str(), q.query_type()) {
        ("a.allowed.test.", RecordType::A) => {
            resp.answers
                .push(rec("a.allowed.test.", 60, a("198.51.100.10")));
        }
        ("a.allowed.test.", RecordType::AAAA) => {
            let v6 = RData::AAAA(AAAA("2001:db8::10".parse().unwrap()));
            resp.answers.push(rec("a.allowed.test.", 60, v6));
        }
        ("alias.allowed.test.", RecordType::A) => {
            let target = RData::CNAME(CNAME(name("target.allowed.test.")));
            resp.answers.push(rec("alias.allowed.test.", 60, target));
            resp.answers
                .push(rec("target.allowed.test.", 60, a("198.51.100.20")));
        }
        ("big.allowed.test.", RecordType::A) if !tcp => resp.metadata.truncation = true,
        ("big.allowed.test.", RecordType::A) => {
            resp.answers
                .push(rec("big.allowed.test.", 60, a("198.51.100.30")));
        }
        ("spoof.allowed.test.", RecordType::A) => {
            let mut forged = resp.clone();
            forged.metadata.id = msg.metadata.id.wrapping_add(1);
            forged
                .answers
                .push(rec("spoof.allowed.test.", 60, a("203.0.113.66")));
            out.push(forged.to_vec().unwrap());
            resp.answers
                .push(rec("spoof.allowed.test.", 60, a("198.51.100.40")));
        }
        _ => resp.metadata.response_code = ResponseCode::NXDomain,
    }
    out.push(resp.to_vec().unwrap());
    out
}

// ---- fake learner ---------------------------------------------------------------------

#[derive(Debug)]
pub(super) struct Learned {
    pub(super) addr: IpAddr,
    pub(super) slots: Vec<Slot>,
    pub(super) ttl: u32,
    pub(super) at: Instant,
}

#[derive(Default)]
pub(super) struct FakeLearner {
    pub(super) fail: bool,
    pub(super) learned: Mutex<Vec<Learned>>,
}

impl Learner for FakeLearner {
    fn learn(&self, addr: IpAddr, slots: &[Slot], ttl: u32) -> Result<(), LearnFailed> {
        if self.fail {
            return Err("learned-address map is full".into());
        }
        self.learned.lock().unwrap().push(Learned {
            addr,
            slots: slots.to_vec(),
            ttl,
            at: Instant::now(),
        });
        Ok(())
    }
}

impl FakeLearner {
    pub(super) fn count(&self) -> usize {
        self.learned.lock().unwrap().len()
    }
}

// ---- harness ----------------------------------------------------------------------------

pub(super) struct Opts {
    pub(super) qps: u32,
    pub(super) learn_fails: bool,
    /// Replaces the fake upstream in the config (e.g. a silent socket).
    pub(super) upstream: Option<SocketAddr>,
    pub(super) timeout: Duration,
    /// The query budget's clock (default: the wall clock).
    pub(super) clock: Option<Clock>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            qps: 1000,
            learn_fails: false,
            upstream: None,
            timeout: Duration::from_secs(2),
            clock: None,
        }
    }
}

pub(super) struct Harness {
    pub(super) proxy: Option<RunningDnsProxy>,
    port: u16,
    pub(super) policy: Arc<Policy>,
    pub(super) learner: Arc<FakeLearner>,
    pub(super) names: Arc<Mutex<HashMap<IpAddr, String>>>,
    audit_path: PathBuf,
    pub(super) upstream: FakeUpstream,
}

static NEXT_AUDIT: AtomicUsize = AtomicUsize::new(0);

pub(super) fn start(opts: Opts) -> Harness {
    let upstream = FakeUpstream::start();
    let upstream_addr = opts.upstream.unwrap_or(upstream.addr);
    let manifest = format!(
        r#"
version = 1
[bottle]
name = "proxy-test"
[dns]
upstream = ["{upstream_addr}"]
min_ttl = 5
max_ttl = 300
queries_per_second = {qps}
[[egress.allow]]
domain = "*.allowed.test"
ports = [443]
[[egress.deny]]
domain = "bad.allowed.test"
"#,
        qps = opts.qps
    );
    let manifest = parse_manifest(&manifest, "proxy-test.toml").unwrap();
    let policy = Arc::new(Policy::from_manifest_unenforced(manifest).unwrap());
    let audit_path = std::env::temp_dir().join(format!(
        "cork-dns-proxy-test-{}-{}.jsonl",
        std::process::id(),
        NEXT_AUDIT.fetch_add(1, Ordering::Relaxed)
    ));
    let sink = Arc::new(Mutex::new(AuditSink::open(Some(&audit_path)).unwrap()));
    let learner = Arc::new(FakeLearner {
        fail: opts.learn_fails,
        ..FakeLearner::default()
    });
    let names = Arc::new(Mutex::new(HashMap::new()));
    let bound = BoundDnsProxy::bind(0).unwrap();
    let port = bound.port();
    let cfg = DnsProxyConfig {
        bottle: "proxy-test".into(),
        policy: Arc::clone(&policy),
        upstreams: policy.dns.upstream.clone().unwrap(),
        upstream_timeout: opts.timeout,
        resolved: Arc::default(),
    };
    let proxy = match opts.clock {
        Some(clock) => {
            bound.start_with_clock(cfg, learner.clone(), sink, Arc::clone(&names), clock)
        }
        None => bound.start(cfg, learner.clone(), sink, Arc::clone(&names)),
    };
    Harness {
        proxy: Some(proxy),
        port,
        policy,
        learner,
        names,
        audit_path,
        upstream,
    }
}

impl Harness {
    pub(super) fn v4(&self) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.port)
    }

    pub(super) fn v6(&self) -> SocketAddr {
        SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.port)
    }

    pub(super) fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub(super) fn last_audit(&self) -> Value {
        self.audit().pop().expect("an audit line")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.proxy.take());
        if let Err(e) = std::fs::remove_file(&self.audit_path) {
            eprintln!("removing {}: {e}", self.audit_path.display());
        }
    }
}

// ---- clients ----------------------------------------------------------------------------

pub(super) fn query(id: u16, qname: &str, rtype: RecordType) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(op::Query::query(name(qname), rtype));
    msg.to_vec().unwrap()
}

/// Sends one datagram and waits for the reply; returns it and when it arrived.
pub(super) fn udp_ask(server: SocketAddr, packet: &[u8]) -> (Message, Instant) {
    let local: IpAddr = if server.is_ipv4() {
        Ipv4Addr::LOCALHOST.into()
    } else {
        Ipv6Addr::LOCALHOST.into()
    };
    let sock = UdpSocket::bind((local, 0)).unwrap();
    sock.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    sock.send_to(packet, server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = sock.recv_from(&mut buf).expect("a reply from the proxy");
    let at = Instant::now();
    assert_eq!(from, server);
    (Message::from_vec(&buf[..n]).unwrap(), at)
}

pub(super) fn tcp_connect(server: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(server).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream
}

pub(super) fn tcp_read(stream: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg).unwrap();
    Message::from_vec(&msg).unwrap()
}

pub(super) fn addrs(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(ip.to_string()),
            RData::AAAA(AAAA(ip)) => Some(ip.to_string()),
            _ => None,
        })
        .collect()
}

pub(super) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}
