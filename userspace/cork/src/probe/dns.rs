//! DNS probes: raw UDP queries (hickory-proto messages) to the bottle's system resolver and
//! to resolvers nothing serves DNS at. Every DNS packet a bottle sends is answered by
//! cork's per-bottle proxy, so a name the manifest does not allow is REFUSED, a TXT query
//! is REFUSED, and a query to any address still gets cork's answer, from the address it
//! was sent to.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use cork_policy::Proto;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::catalogue::{DnsExpect, Expect};
use super::net::{connect_probe, errno_name};
use super::report::{Outcome, Trace};

/// The mnemonic of a response code (`REFUSED`), as dig and cork's audit write it.
pub fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// What came back for one query.
#[derive(Debug)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub from: SocketAddr,
    pub addrs: Vec<IpAddr>,
}

/// Why a query got no reply.
#[derive(Debug)]
pub enum NoReply {
    /// socket/sendto/recvfrom failed (the errno tells whether the kernel refused it).
    Io(io::Error),
    Timeout,
    Malformed(String),
}

fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Result<Vec<u8>, NoReply> {
    let name = Name::from_ascii(name)
        .map_err(|e| NoReply::Malformed(format!("{name:?} is not a DNS name: {e}")))?;
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, qtype));
    msg.to_vec()
        .map_err(|e| NoReply::Malformed(format!("encoding the query: {e}")))
}

/// One UDP query to `server`, waiting up to `timeout` for the reply with its id.
pub fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
    trace: &mut Trace,
) -> Result<Reply, NoReply> {
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let bytes = query_bytes(id, name, qtype)?;
    let any: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(any).map_err(NoReply::Io)?;
    let sent = sock.send_to(&bytes, server);
    match &sent {
        Ok(n) => trace.step(format!("sendto({server}, {qtype} {name}, {n} bytes) = ok")),
        Err(e) => trace.step(format!(
            "sendto({server}, {qtype} {name}) = {}",
            errno_name(e)
        )),
    }
    sent.map_err(NoReply::Io)?;
    trace.detail(|| format!("query bytes: {}", hex(&bytes)));
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            trace.step(format!("no reply with id {id:#06x} within {timeout:?}"));
            return Err(NoReply::Timeout);
        }
        sock.set_read_timeout(Some(left)).map_err(NoReply::Io)?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                trace.step(format!("recvfrom = {}", errno_name(&e)));
                return Err(NoReply::Io(e));
            }
        };
        trace.detail(|| format!("reply bytes from {from}: {}", hex(&buf[..n])));
        let Ok(msg) = Message::from_vec(&buf[..n]) else {
            trace.step(format!("{n} bytes from {from}: not a DNS message, ignored"));
            continue;
        };
        if msg.metadata.id != id {
            continue;
        }
        let addrs: Vec<IpAddr> = msg
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        let rcode = msg.metadata.response_code;
        trace.step(format!(
            "reply from {from}: {}, {} answer(s) {addrs:?}",
            rcode_name(rcode),
            msg.answers.len()
        ));
        return Ok(Reply { rcode, from, addrs });
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn no_reply_outcome(server: SocketAddr, e: NoReply) -> Outcome {
    match e {
        NoReply::Timeout => Outcome::fail(
            "timeout",
            format!(
                "no answer from {server}: the query was not redirected to cork's DNS proxy \
                 (it left the bottle, or was dropped)"
            ),
        ),
        NoReply::Io(e) if e.raw_os_error() == Some(libc::EPERM) => Outcome::fail(
            "EPERM",
            format!(
                "the kernel refused DNS to {server} (EPERM) instead of redirecting it to \
                 cork's proxy: the bottle's DNS cannot work"
            ),
        ),
        NoReply::Io(e) => {
            let name = errno_name(&e);
            Outcome::fail(name.clone(), format!("the query to {server} failed: {e}"))
        }
        NoReply::Malformed(why) => Outcome::fail("no query sent", why),
    }
}

pub fn dns_probe(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    expect: DnsExpect,
    timeout: Duration,
    trace: &mut Trace,
) -> Outcome {
    let reply = match query(server, name, qtype, timeout, trace) {
        Ok(r) => r,
        Err(e) => return no_reply_outcome(server, e),
    };
    let observed = format!("{} from {}", rcode_name(reply.rcode), reply.from);
    match expect {
        DnsExpect::Refused if reply.rcode == ResponseCode::Refused => Outcome::pass(observed),
        DnsExpect::Refused => Outcome::fail(
            observed,
            format!(
                "{qtype} {name} got {} {:?}, not REFUSED: the answer did not come from cork's \
                 policy (the query went past cork's proxy, or the proxy allowed it)",
                rcode_name(reply.rcode),
                reply.addrs
            ),
        ),
        DnsExpect::Redirected if reply.from == server => Outcome::pass(observed),
        DnsExpect::Redirected => Outcome::fail(
            observed,
            format!(
                "the reply came from {}, not from {server} where the query went: the \
                 bottle's resolver library would drop it",
                reply.from
            ),
        ),
    }
}

/// An allowed name: not REFUSED, and its first address reachable (if it has one).
pub fn domain_allow_probe(
    server: SocketAddr,
    name: &str,
    port: u16,
    proto: Proto,
    expect: Expect,
    timeout: Duration,
    trace: &mut Trace,
) -> Outcome {
    let mut addrs = Vec::new();
    let mut rcodes = Vec::new();
    for qtype in [RecordType::A, RecordType::AAAA] {
        let reply = match query(server, name, qtype, timeout, trace) {
            Ok(r) => r,
            Err(e) => return no_reply_outcome(server, e),
        };
        if reply.rcode == ResponseCode::Refused {
            return Outcome::fail(
                format!("{qtype} REFUSED"),
                format!(
                    "cork's DNS proxy refused {name}, which the manifest allows: the bottle \
                     cannot reach it by name"
                ),
            );
        }
        rcodes.push(format!("{qtype} {}", rcode_name(reply.rcode)));
        addrs.extend(reply.addrs);
    }
    let answered = rcodes.join(", ");
    let Some(&first) = addrs.first() else {
        return Outcome::pass(format!("{answered}; no address to connect to"));
    };
    let connected = connect_probe(SocketAddr::new(first, port), proto, expect, timeout, trace);
    Outcome {
        observed: format!("{answered}; {first}:{port} {}", connected.observed),
        ..connected
    }
}

/// The first nameserver of resolv.conf text.
pub fn resolv_conf_nameserver(text: &str) -> Option<IpAddr> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == "nameserver")
            .then(|| f.next())
            .flatten()
            .and_then(|a| a.split('%').next()?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_nameserver() {
        let text = "# x\nsearch test\nnameserver 198.51.100.53\nnameserver 2001:db8::53\n";
        assert_eq!(
            resolv_conf_nameserver(text),
            Some("198.51.100.53".parse().unwrap())
        );
        assert_eq!(
            resolv_conf_nameserver("nameserver fe80::1%eth0\n"),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(resolv_conf_nameserver("options ndots:1\n"), None);
    }

    #[test]
    fn queries_encode() {
        let q = query_bytes(7, "cork-probe-not-allowed.invalid", RecordType::TXT).unwrap();
        let m = Message::from_vec(&q).unwrap();
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.metadata.id, 7);
    }
}
