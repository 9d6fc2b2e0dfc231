//! The proxy's bounds and its stop, end to end on loopback like the other proxy tests: the
//! rate limit (against the harness's hand-moved clock), the in-flight and connection
//! bounds, and what is ended before `stop` returns.

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use super::super::{MAX_TCP_CONNECTIONS, MAX_UDP_IN_FLIGHT};
use super::harness::{
    CLIENT_TIMEOUT, Opts, query, start, tcp_connect, tcp_read, udp_ask, write_frame,
};

#[test]
fn queries_over_the_rate_are_refused_until_the_bucket_refills() {
    let h = start(Opts {
        qps: 2,
        ..Opts::default()
    });
    let ask = |id| {
        let (reply, _) = udp_ask(h.v4(), &query(id, "a.allowed.test", RecordType::A));
        reply.metadata.response_code
    };
    // The rate limit's clock stands still: a burst of 2, then nothing.
    let rcodes: Vec<ResponseCode> = (0..5).map(ask).collect();
    assert_eq!(rcodes[..2], [ResponseCode::NoError; 2]);
    assert_eq!(rcodes[2..], [ResponseCode::Refused; 3]);
    let reasons: Vec<Value> = h.audit().iter().map(|e| e["reason"].clone()).collect();
    assert_eq!(
        reasons,
        [
            "allowed",
            "allowed",
            "rate_limited",
            "rate_limited",
            "rate_limited"
        ]
    );
    let last = h.last_audit();
    assert_eq!(last["name"], "a.allowed.test");
    assert_eq!(last["verdict"], "deny");
    assert_eq!(h.upstream.asked(), 2);

    // Half a second at 2/s is one token.
    h.clock.advance(Duration::from_millis(500));
    assert_eq!(ask(5), ResponseCode::NoError);
    assert_eq!(ask(6), ResponseCode::Refused);
    assert_eq!(h.upstream.asked(), 3);

    // TCP draws on the same bucket.
    let mut stream = tcp_connect(h.v4());
    write_frame(&mut stream, &query(7, "a.allowed.test", RecordType::A));
    assert_eq!(
        tcp_read(&mut stream).metadata.response_code,
        ResponseCode::Refused
    );
    assert_eq!(h.last_audit()["transport"], "tcp");
}

#[test]
fn udp_queries_past_the_in_flight_bound_get_servfail_overloaded() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    silent.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let h = start(Opts {
        upstream: Some(silent.local_addr().unwrap()),
        timeout: Duration::from_secs(30),
        ..Opts::default()
    });
    // Fill the bound with queries waiting on the silent upstream, seen arriving there.
    let waiting = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    for id in 0..MAX_UDP_IN_FLIGHT {
        let id = u16::try_from(id).unwrap();
        waiting
            .send_to(&query(id, "a.allowed.test", RecordType::A), h.v4())
            .unwrap();
    }
    let mut buf = [0u8; 512];
    for _ in 0..MAX_UDP_IN_FLIGHT {
        silent.recv_from(&mut buf).expect("the proxy asks upstream");
    }
    // Both families share the bound.
    let (reply, _) = udp_ask(h.v6(), &query(999, "a.allowed.test", RecordType::AAAA));
    assert_eq!(reply.metadata.id, 999);
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let ev = h.last_audit();
    assert_eq!(ev["reason"], "overloaded");
    assert_eq!(ev["name"], "a.allowed.test");
    assert_eq!(ev["rcode"], "SERVFAIL");
    assert_eq!(ev["verdict"], "deny");
}

#[test]
fn tcp_connections_past_the_bound_are_closed() {
    let h = start(Opts::default());
    // Each connection answered once holds its place until it closes.
    let _held: Vec<TcpStream> = (0..MAX_TCP_CONNECTIONS)
        .map(|i| {
            let server = if i % 2 == 0 { h.v4() } else { h.v6() };
            let mut stream = tcp_connect(server);
            let id = u16::try_from(i).unwrap();
            write_frame(&mut stream, &query(id, "other.test", RecordType::A));
            assert_eq!(tcp_read(&mut stream).metadata.id, id);
            stream
        })
        .collect();
    let mut extra = tcp_connect(h.v4());
    let mut rest = Vec::new();
    assert_eq!(extra.read_to_end(&mut rest).unwrap(), 0, "closed on accept");
    // ...and audited, before the close: a refusal is never silent.
    let ev = h.last_audit();
    assert_eq!(ev["reason"], "connection_limit");
    assert_eq!(ev["verdict"], "deny");
    assert_eq!(ev["transport"], "tcp");
    assert_eq!(ev["name"], Value::Null);
    assert_eq!(ev["rcode"], Value::Null);
    assert_eq!(
        h.audit()
            .iter()
            .filter(|e| e["reason"] == "connection_limit")
            .count(),
        1
    );
}

#[test]
fn stop_ends_work_in_flight_before_it_returns() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    silent.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let mut h = start(Opts {
        upstream: Some(silent.local_addr().unwrap()),
        timeout: Duration::from_secs(30),
        ..Opts::default()
    });
    // A UDP query waiting on the silent upstream: seen arriving there.
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    client
        .send_to(&query(15, "a.allowed.test", RecordType::A), h.v4())
        .unwrap();
    let mut buf = [0u8; 512];
    silent.recv_from(&mut buf).expect("the proxy asks upstream");
    // An idle TCP connection: answered once, so its task is running.
    let mut stream = tcp_connect(h.v4());
    write_frame(&mut stream, &query(16, "other.test", RecordType::A));
    assert_eq!(
        tcp_read(&mut stream).metadata.response_code,
        ResponseCode::Refused
    );

    h.proxy.take().unwrap().stop();
    // When stop returns, the query waiting on upstream has ended and said so...
    let ev = h.last_audit();
    assert_eq!(ev["name"], "a.allowed.test");
    assert_eq!(ev["reason"], "proxy_stopped");
    assert_eq!(ev["verdict"], "allow");
    assert_eq!(ev["rcode"], Value::Null);
    // ...without answering it on the way out...
    client.set_nonblocking(true).unwrap();
    let unanswered = client.recv_from(&mut buf).unwrap_err();
    assert_eq!(unanswered.kind(), std::io::ErrorKind::WouldBlock);
    // ...the listeners are closed...
    let refused = TcpStream::connect(h.v4()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // ...and so is the connection.
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
}
