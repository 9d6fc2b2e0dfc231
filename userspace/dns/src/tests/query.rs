use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, RecordType};

use super::*;
use crate::{ClientEdns, EDNS_UDP_PAYLOAD, QueryRefusal, QueryType, Rcode, refuse};

fn refusal(packet: &[u8]) -> QueryRefusal {
    check_query(packet).unwrap_err()
}

/// The refusal's reply, parsed: same id, a response, with `rcode`.
fn refusal_reply(refusal: &QueryRefusal, id: u16, rcode: ResponseCode) -> Message {
    let reply = parse(&refusal.reply().expect("a reply"));
    assert_eq!(reply.metadata.id, id);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    // Compared as numbers: BADVERS and BADSIG share code 16, and hickory decodes BADSIG.
    assert_eq!(u16::from(reply.metadata.response_code), u16::from(rcode));
    assert!(reply.answers.is_empty());
    reply
}

#[test]
fn allowed_types_pass_and_name_is_normalised() {
    for qtype in QueryType::ALL {
        let query = checked(7, "WWW.Example.TEST.", qtype.record_type());
        assert_eq!(query.id, 7);
        assert_eq!(query.name, "www.example.test");
        assert_eq!(query.qtype, qtype);
        assert!(query.rd);
        assert_eq!(query.edns, None);
        assert_eq!(query.udp_limit(), 512);
    }
}

#[test]
fn edns_is_recorded() {
    let msg = with_edns(
        query_msg(1, "api.example.test.", RecordType::AAAA),
        4096,
        true,
    );
    let query = check_query(&msg.to_vec().unwrap()).unwrap();
    let edns = ClientEdns {
        udp_payload: 4096,
        dnssec_ok: true,
    };
    assert_eq!(query.edns, Some(edns));
    assert_eq!(query.udp_limit(), 4096);
}

#[test]
fn data_carrying_types_are_refused() {
    use RecordType::*;
    for rtype in [TXT, NULL, ANY, MX, SRV, PTR, NS, SOA, AXFR, CAA] {
        let refused = refusal(&query_msg(9, "x.example.test.", rtype).to_vec().unwrap());
        assert_eq!(refused.reason(), "qtype_refused", "{rtype}");
        assert_eq!(refused.id(), Some(9));
        assert_eq!(refused.name().as_deref(), Some("x.example.test"));
        let reply = refusal_reply(&refused, 9, ResponseCode::Refused);
        assert_eq!(reply.queries[0].query_type(), rtype);
        assert_eq!(reply.queries[0].name(), &name("x.example.test."));
    }
}

#[test]
fn class_other_than_in_is_refused() {
    let refused = refusal(&raw_query(3, &[b"www", b"example", b"test"], 1, 3));
    assert_eq!(refused.reason(), "class_refused");
    let reply = refusal_reply(&refused, 3, ResponseCode::Refused);
    assert_eq!(reply.queries[0].query_class(), DNSClass::CH);
}

#[test]
fn responses_are_dropped() {
    let mut msg = query_msg(4, "www.example.test.", RecordType::A);
    msg.metadata.message_type = MessageType::Response;
    let refused = refusal(&msg.to_vec().unwrap());
    assert_eq!(refused.reason(), "not_a_query");
    assert_eq!(refused.id(), Some(4));
    assert!(refused.reply().is_none());
}

#[test]
fn other_opcodes_get_notimp() {
    for opcode in [OpCode::Status, OpCode::Notify, OpCode::Update] {
        let mut msg = query_msg(5, "www.example.test.", RecordType::A);
        msg.metadata.op_code = opcode;
        let refused = refusal(&msg.to_vec().unwrap());
        assert_eq!(refused.reason(), "not_a_query");
        let reply = refusal_reply(&refused, 5, ResponseCode::NotImp);
        assert_eq!(reply.metadata.op_code, opcode);
        assert!(reply.queries.is_empty());
    }
}

#[test]
fn exactly_one_question() {
    let none = Message::new(6, MessageType::Query, OpCode::Query);
    let refused = refusal(&none.to_vec().unwrap());
    assert_eq!(refused.reason(), "no_question");
    refusal_reply(&refused, 6, ResponseCode::FormErr);

    let mut two = query_msg(6, "a.example.test.", RecordType::A);
    two.add_query(op::Query::query(name("b.example.test."), RecordType::A));
    let refused = refusal(&two.to_vec().unwrap());
    assert_eq!(refused.reason(), "multiple_questions");
    assert!(
        refusal_reply(&refused, 6, ResponseCode::FormErr)
            .queries
            .is_empty()
    );
}

/// Labels of the given lengths followed by `test`.
fn long_name(lens: &[usize]) -> Vec<Vec<u8>> {
    let mut labels: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'a'; n]).collect();
    labels.push(b"test".to_vec());
    labels
}

fn raw(labels: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = labels.iter().map(Vec::as_slice).collect();
    raw_query(8, &refs, 1, 1)
}

#[test]
fn name_and_label_length_limits() {
    // 63 + 63 + 63 + 56 + "test" + 4 dots = 253 bytes: the longest name allowed.
    let query = check_query(&raw(&long_name(&[63, 63, 63, 56]))).unwrap();
    assert_eq!(query.name.len(), 253);

    let refused = refusal(&raw(&long_name(&[63, 63, 63, 57])));
    assert_eq!(refused.reason(), "name_too_long");
    // hickory stops at the name, so the reply has the id but no question.
    assert!(
        refusal_reply(&refused, 8, ResponseCode::Refused)
            .queries
            .is_empty()
    );

    let refused = refusal(&raw(&long_name(&[63, 63, 63, 63, 63])));
    assert_eq!(refused.reason(), "name_too_long");

    assert!(check_query(&raw(&long_name(&[63]))).is_ok());
    let refused = refusal(&raw(&long_name(&[64])));
    assert_eq!(refused.reason(), "label_too_long");
    refusal_reply(&refused, 8, ResponseCode::Refused);
}

#[test]
fn names_must_be_host_names() {
    let bad: [&[&[u8]]; 5] = [
        &[b"a b", b"test"],
        &[b"api.example", b"test"],
        &[b"nul\0", b"test"],
        &[b"*", b"example", b"test"],
        &[],
    ];
    for labels in bad {
        let refused = refusal(&raw_query(2, labels, 1, 1));
        assert_eq!(refused.reason(), "name_invalid", "{labels:?}");
        refusal_reply(&refused, 2, ResponseCode::Refused);
    }
    let refused = refusal(&raw_query(2, &[b"api.example", b"test"], 1, 1));
    assert_eq!(refused.name().as_deref(), Some("api\\046example.test"));
    // Underscore labels are how HTTPS queries name non-default ports (RFC 9460 §2.3).
    let query = check_query(&raw_query(
        2,
        &[b"_8443", b"_https", b"api", b"test"],
        65,
        1,
    ));
    assert_eq!(query.unwrap().name, "_8443._https.api.test");
}

#[test]
fn edns_version_other_than_zero_gets_badvers() {
    let mut msg = with_edns(
        query_msg(11, "www.example.test.", RecordType::A),
        1232,
        false,
    );
    if let Some(edns) = msg.edns.as_mut() {
        edns.set_version(1);
    }
    let refused = refusal(&msg.to_vec().unwrap());
    assert_eq!(refused.reason(), "edns_version");
    let reply = refusal_reply(&refused, 11, ResponseCode::BADVERS);
    assert!(reply.edns.is_some());
}

#[test]
fn malformed_packets() {
    let refused = refusal(&[0x12, 0x34, 0x01]);
    assert_eq!(refused.reason(), "malformed");
    assert_eq!(refused.id(), None);
    assert!(refused.reply().is_none());

    // The header claims an additional record that is garbage: the question is echoed.
    let mut packet = query_msg(12, "www.example.test.", RecordType::A)
        .to_vec()
        .unwrap();
    packet[11] = 1;
    packet.extend_from_slice(&[0xff; 7]);
    let refused = refusal(&packet);
    assert_eq!(refused.reason(), "malformed");
    let reply = refusal_reply(&refused, 12, ResponseCode::FormErr);
    assert_eq!(reply.queries.len(), 1);
}

#[test]
fn refuse_echoes_id_question_and_edns() {
    for rcode in [Rcode::Refused, Rcode::NxDomain, Rcode::ServFail] {
        for edns in [false, true] {
            let mut msg = query_msg(0x4242, "WWW.Example.TEST.", RecordType::AAAA);
            if edns {
                msg = with_edns(msg, 1400, false);
            }
            let query = check_query(&msg.to_vec().unwrap()).unwrap();
            let reply = parse(&refuse(&query, rcode));
            assert_eq!(reply.metadata.id, 0x4242);
            assert_eq!(reply.metadata.message_type, MessageType::Response);
            assert_eq!(reply.metadata.response_code, rcode.into());
            assert!(reply.metadata.recursion_desired);
            assert_eq!(reply.queries.len(), 1);
            // Case is kept: resolvers using 0x20 randomisation compare it.
            assert_eq!(reply.queries[0].name().to_ascii(), "WWW.Example.TEST.");
            assert_eq!(reply.queries[0].query_type(), RecordType::AAAA);
            assert!(reply.answers.is_empty() && reply.additionals.is_empty());
            assert_eq!(reply.edns.is_some(), edns);
        }
    }
    assert_eq!(Rcode::Refused.as_str(), "REFUSED");
    assert_eq!(Rcode::BadVers.code(), 16);
}

#[test]
fn upstream_query_forwards_only_the_question() {
    let mut msg = with_edns(
        query_msg(1, "API.Example.TEST.", RecordType::HTTPS),
        4096,
        true,
    );
    if let Some(edns) = msg.edns.as_mut() {
        let subnet = ClientSubnet::new(ip("198.51.100.0"), 24, 0);
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
        edns.options_mut()
            .insert(EdnsOption::Unknown(12, vec![0x55; 64]));
    }
    msg.metadata.recursion_desired = false;
    msg.add_additional(a("smuggled.example.test.", "198.51.100.9", 60));
    let query = check_query(&msg.to_vec().unwrap()).unwrap();

    let upstream = parse(&query.upstream_query(UPSTREAM_ID));
    assert_eq!(upstream.metadata.id, UPSTREAM_ID);
    assert_eq!(upstream.metadata.message_type, MessageType::Query);
    assert!(upstream.metadata.recursion_desired);
    assert_eq!(upstream.queries.len(), 1);
    assert_eq!(upstream.queries[0].name().to_ascii(), "api.example.test.");
    assert_eq!(upstream.queries[0].query_type(), RecordType::HTTPS);
    assert!(upstream.answers.is_empty() && upstream.additionals.is_empty());
    let edns = upstream.edns.expect("OPT record");
    assert_eq!(edns.max_payload(), EDNS_UDP_PAYLOAD);
    assert!(!edns.flags().dnssec_ok);
    assert!(edns.options().options.is_empty());
}
