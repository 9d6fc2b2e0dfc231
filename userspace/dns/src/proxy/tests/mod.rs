//! The proxy end to end on loopback: a fake upstream on 127.0.0.1:0 (UDP and TCP) answers
//! `*.test` names, a recording fake [`Learner`](super::Learner) stands in for the kernel
//! maps, and real client sockets talk to the proxy. No sleeps: the fakes and the audit file
//! are the readiness signals (the audit line is written before the reply is sent). Nothing
//! asserts how long anything took: the rate limit reads a clock the test moves by hand,
//! and timeouts and stopping are proven by what happened in which order.

mod fake_upstream;
mod harness;
mod limits;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{self, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::Value;

use super::BoundDnsProxy;
use harness::{
    CLIENT_TIMEOUT, Opts, addrs, name, query, start, strings, tcp_connect, tcp_read, udp_ask,
    write_frame,
};

// ---- tests ------------------------------------------------------------------------------

#[test]
fn an_allowed_name_is_learned_before_the_reply_arrives() {
    let h = start(Opts::default());
    let (reply, received) = udp_ask(h.v4(), &query(0x1234, "A.Allowed.test.", RecordType::A));
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&reply), ["198.51.100.10"]);

    let learned = h.learner.learned.lock().unwrap();
    assert_eq!(learned.len(), 1);
    assert_eq!(learned[0].addr, "198.51.100.10".parse::<IpAddr>().unwrap());
    assert_eq!(learned[0].ttl, 60);
    assert_eq!(learned[0].slots, h.policy.allowed_slots("a.allowed.test"));
    assert!(!learned[0].slots.is_empty());
    assert!(learned[0].at < received, "learned after the reply arrived");
    assert_eq!(
        h.resolved.name_of(learned[0].addr).as_deref(),
        Some("a.allowed.test")
    );
    assert!(h.resolved.resolved("a.allowed.test", learned[0].addr));

    let ev = h.last_audit();
    let obj = ev.as_object().unwrap();
    for key in [
        "ts",
        "bottle",
        "layer",
        "event",
        "name",
        "qtype",
        "verdict",
        "reason",
        "rule",
        "answers",
        "cnames",
        "rcode",
        "transport",
        "client",
    ] {
        assert!(obj.contains_key(key), "audit event lacks {key}: {ev}");
    }
    assert!(ev["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(ev["bottle"], "proxy-test");
    assert_eq!(ev["layer"], "dns");
    assert_eq!(ev["event"], "query");
    assert_eq!(ev["name"], "a.allowed.test");
    assert_eq!(ev["qtype"], "A");
    assert_eq!(ev["verdict"], "allow");
    assert_eq!(ev["reason"], "allowed");
    assert_eq!(ev["rule"], "egress.allow[0]");
    assert_eq!(strings(&ev["answers"]), ["198.51.100.10"]);
    assert_eq!(strings(&ev["cnames"]), Vec::<String>::new());
    assert_eq!(ev["rcode"], "NOERROR");
    assert_eq!(ev["transport"], "udp");
    assert!(ev["client"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[test]
fn the_ipv6_listener_answers_on_the_same_port() {
    let h = start(Opts::default());
    let (reply, _) = udp_ask(h.v6(), &query(7, "a.allowed.test", RecordType::AAAA));
    assert_eq!(addrs(&reply), ["2001:db8::10"]);
    let ev = h.last_audit();
    assert_eq!(ev["qtype"], "AAAA");
    assert!(ev["client"].as_str().unwrap().starts_with("[::1]:"));
    assert_eq!(h.learner.count(), 1);
}

#[test]
fn a_cname_chain_is_followed_and_its_target_learned() {
    let h = start(Opts::default());
    let (reply, _) = udp_ask(h.v4(), &query(8, "alias.allowed.test", RecordType::A));
    assert_eq!(addrs(&reply), ["198.51.100.20"]);
    let ev = h.last_audit();
    assert_eq!(strings(&ev["cnames"]), ["target.allowed.test"]);
    assert_eq!(strings(&ev["answers"]), ["198.51.100.20"]);
    let target: IpAddr = "198.51.100.20".parse().unwrap();
    // The address is recorded under the name the bottle asked for.
    assert_eq!(
        h.resolved.name_of(target).as_deref(),
        Some("alias.allowed.test")
    );
    assert!(h.resolved.resolved("alias.allowed.test", target));
    assert!(!h.resolved.resolved("target.allowed.test", target));
}

#[test]
fn denied_and_unlisted_names_are_refused_without_asking_upstream() {
    let h = start(Opts::default());
    let cases = [
        ("bad.allowed.test", "denied", Value::from("egress.deny[0]")),
        ("other.test", "not_allowed", Value::Null),
        // A wildcard does not cover its apex.
        ("allowed.test", "not_allowed", Value::Null),
    ];
    for (qname, reason, rule) in cases {
        let (reply, _) = udp_ask(h.v4(), &query(9, qname, RecordType::A));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{qname}"
        );
        assert!(reply.answers.is_empty());
        let ev = h.last_audit();
        assert_eq!(ev["name"], qname);
        assert_eq!(ev["verdict"], "deny");
        assert_eq!(ev["reason"], reason);
        assert_eq!(ev["rule"], rule);
        assert_eq!(ev["rcode"], "REFUSED");
    }
    assert_eq!(h.upstream.asked(), 0);
    assert_eq!(h.learner.count(), 0);
    assert_eq!(h.resolved.name_of("198.51.100.10".parse().unwrap()), None);
}

#[test]
fn a_refused_type_is_refused_without_asking_upstream() {
    let h = start(Opts::default());
    let (reply, _) = udp_ask(h.v4(), &query(10, "a.allowed.test", RecordType::TXT));
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    let ev = h.last_audit();
    assert_eq!(ev["reason"], "qtype_refused");
    assert_eq!(ev["qtype"], "TXT");
    assert_eq!(ev["name"], "a.allowed.test");
    assert_eq!(ev["verdict"], "deny");
    assert_eq!(ev["rcode"], "REFUSED");
    assert_eq!(h.upstream.asked(), 0);
    assert_eq!(h.learner.count(), 0);
}

#[test]
fn a_silent_upstream_gives_servfail_after_the_attempt_times_out() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    silent.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let h = start(Opts {
        upstream: Some(silent.local_addr().unwrap()),
        timeout: Duration::from_millis(200),
        ..Opts::default()
    });
    // The client waits far longer than the attempt's timeout: the reply can only be the
    // proxy giving up on an upstream that was asked and never answered.
    let (reply, _) = udp_ask(h.v4(), &query(11, "a.allowed.test", RecordType::A));
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let mut buf = [0u8; 512];
    silent
        .recv_from(&mut buf)
        .expect("the proxy asked upstream");
    let ev = h.last_audit();
    assert_eq!(ev["reason"], "upstream_failed");
    assert_eq!(ev["verdict"], "allow");
    assert_eq!(ev["rcode"], "SERVFAIL");
    assert_eq!(h.learner.count(), 0);
}

#[test]
fn tcp_answers_each_framed_message_on_one_connection() {
    let h = start(Opts::default());
    let mut stream = tcp_connect(h.v6());
    // Garbage first: no reply, but an audit line; the connection stays usable.
    write_frame(&mut stream, b"abc");
    write_frame(&mut stream, &query(21, "a.allowed.test", RecordType::A));
    write_frame(&mut stream, &query(22, "a.allowed.test", RecordType::AAAA));
    let first = tcp_read(&mut stream);
    let second = tcp_read(&mut stream);
    assert_eq!(first.metadata.id, 21);
    assert_eq!(addrs(&first), ["198.51.100.10"]);
    assert_eq!(second.metadata.id, 22);
    assert_eq!(addrs(&second), ["2001:db8::10"]);
    let audit = h.audit();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[0]["reason"], "malformed");
    assert_eq!(audit[0]["rcode"], Value::Null);
    for ev in &audit[1..] {
        assert_eq!(ev["transport"], "tcp");
        assert_eq!(ev["reason"], "allowed");
    }
    assert_eq!(h.learner.count(), 2);
}

#[test]
fn a_truncated_upstream_answer_is_asked_again_over_tcp() {
    let h = start(Opts::default());
    let (reply, _) = udp_ask(h.v4(), &query(12, "big.allowed.test", RecordType::A));
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(!reply.metadata.truncation);
    assert_eq!(addrs(&reply), ["198.51.100.30"]);
    assert_eq!(h.upstream.asked(), 2, "once over UDP, once over TCP");
}

#[test]
fn a_forged_datagram_is_ignored_until_the_real_answer() {
    let h = start(Opts::default());
    let (reply, _) = udp_ask(h.v4(), &query(13, "spoof.allowed.test", RecordType::A));
    assert_eq!(addrs(&reply), ["198.51.100.40"]);
    let learned: Vec<IpAddr> = h
        .learner
        .learned
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.addr)
        .collect();
    assert_eq!(learned, ["198.51.100.40".parse::<IpAddr>().unwrap()]);
}

#[test]
fn a_learn_failure_gives_servfail() {
    let h = start(Opts {
        learn_fails: true,
        ..Opts::default()
    });
    let (reply, _) = udp_ask(h.v4(), &query(14, "a.allowed.test", RecordType::A));
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(reply.answers.is_empty());
    let ev = h.last_audit();
    assert_eq!(ev["reason"], "learn_failed");
    assert_eq!(ev["rcode"], "SERVFAIL");
    assert_eq!(strings(&ev["answers"]), Vec::<String>::new());
    assert_eq!(h.resolved.name_of("198.51.100.10".parse().unwrap()), None);
}

#[test]
fn bind_takes_one_port_for_all_four_sockets() {
    let bound = BoundDnsProxy::bind(0).unwrap();
    let port = bound.port();
    assert_ne!(port, 0);
    for sock in &bound.udp {
        assert_eq!(sock.local_addr().unwrap().port(), port);
    }
    for listener in &bound.tcp {
        assert_eq!(listener.local_addr().unwrap().port(), port);
    }
    let err = BoundDnsProxy::bind(port).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        err.to_string()
            .contains("binding the DNS proxy's UDP listener on 127.0.0.1:")
    );
}

#[test]
fn the_audited_rcode_of_a_refusal_is_the_one_sent() {
    use crate::check_query;

    let mut two_questions = Message::new(1, MessageType::Query, OpCode::Query);
    two_questions.add_query(op::Query::query(name("a.test"), RecordType::A));
    two_questions.add_query(op::Query::query(name("b.test"), RecordType::A));
    let mut notify = Message::new(2, MessageType::Query, OpCode::Notify);
    notify.add_query(op::Query::query(name("a.test"), RecordType::A));
    let packets = [
        two_questions.to_vec().unwrap(),
        notify.to_vec().unwrap(),
        query(3, "a.test", RecordType::TXT),
        b"abc".to_vec(),
    ];
    for packet in packets {
        let refusal = check_query(&packet).unwrap_err();
        let sent = refusal
            .reply()
            .map(|r| Message::from_vec(&r).unwrap().metadata.response_code);
        let audited = super::decide::refusal_rcode(&refusal).map(|r| -> ResponseCode { r.into() });
        assert_eq!(sent, audited, "{refusal}");
    }
}

/// A VM bottle's proxy listens on its gateway addresses instead of loopback; UDP and TCP,
/// both families, one port.
#[test]
fn the_proxy_binds_on_given_addresses() {
    let v4 = Ipv4Addr::new(127, 0, 0, 2);
    let bound = BoundDnsProxy::bind_on(v4, Ipv6Addr::LOCALHOST, 0).expect("bind on 127.0.0.2");
    let port = bound.port();
    assert_ne!(port, 0);
    // The addresses are taken: a second bind on the same port fails, on loopback 127.0.0.1
    // it does not (the first proxy did not take it).
    assert!(UdpSocket::bind((v4, port)).is_err());
    assert!(std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_err());
    assert!(UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
}
