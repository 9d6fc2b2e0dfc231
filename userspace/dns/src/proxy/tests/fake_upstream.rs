//! The fake resolver the proxy tests talk to: UDP and TCP on one 127.0.0.1 port, knowing a
//! few `*.allowed.test` names (one answer truncated over UDP, one preceded by a forged
//! datagram), counting the queries it got.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::harness::{CLIENT_TIMEOUT, write_frame};

/// A resolver on 127.0.0.1 that knows a few `*.allowed.test` names.
pub(super) struct FakeUpstream {
    pub(super) addr: SocketAddr,
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
                    write_frame(&mut stream, &reply);
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
