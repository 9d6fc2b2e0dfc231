//! The fakes and clients the proxy tests share: a recording [`Learner`], and a [`Harness`]
//! that owns one proxy, its runtime, its audit file and its [`FakeUpstream`].

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cork_policy::{Policy, Slot, parse_manifest};
use hickory_proto::op::{self, Message, MessageType, OpCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;

use super::fake_upstream::FakeUpstream;
pub(super) use super::fake_upstream::name;
use crate::Resolved;
use crate::proxy::{BoundDnsProxy, DnsProxyConfig, LearnFailed, Learner, RunningDnsProxy};
use crate::tcp::frame;
use cork_audit::AuditSink;

pub(super) const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

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
    fn learn(
        &self,
        addr: IpAddr,
        _name: &str,
        slots: &[Slot],
        ttl: u32,
    ) -> Result<(), LearnFailed> {
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
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            qps: 1000,
            learn_fails: false,
            upstream: None,
            timeout: Duration::from_secs(2),
        }
    }
}

/// The rate limit's clock: stands still unless a test moves it.
#[derive(Clone)]
pub(super) struct TestClock(Arc<Mutex<Instant>>);

impl TestClock {
    pub(super) fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

pub(super) struct Harness {
    pub(super) proxy: Option<RunningDnsProxy>,
    pub(super) clock: TestClock,
    /// The agent's runtime stand-in; dropped after the proxy.
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    pub(super) policy: Arc<Policy>,
    pub(super) learner: Arc<FakeLearner>,
    pub(super) resolved: Arc<Resolved>,
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
    let resolved = Arc::new(Resolved::default());
    let bound = BoundDnsProxy::bind(0).unwrap();
    let port = bound.port();
    let cfg = DnsProxyConfig {
        bottle: "proxy-test".into(),
        policy: Arc::new(cork_policy::LivePolicy::new(Arc::clone(&policy))),
        upstreams: policy.dns.upstream.clone().unwrap(),
        upstream_timeout: opts.timeout,
        resolved: Arc::clone(&resolved),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clock = TestClock(Arc::new(Mutex::new(Instant::now())));
    let reading = clock.clone();
    let proxy = bound
        .start_with_clock(
            cfg,
            learner.clone(),
            sink,
            runtime.handle(),
            Arc::new(move || *reading.0.lock().unwrap()),
        )
        .unwrap();
    Harness {
        proxy: Some(proxy),
        clock,
        runtime: Some(runtime),
        port,
        policy,
        learner,
        resolved,
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
        drop(self.runtime.take());
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

/// Writes one length-prefixed message.
pub(super) fn write_frame(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(&frame(msg).unwrap()).unwrap();
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
