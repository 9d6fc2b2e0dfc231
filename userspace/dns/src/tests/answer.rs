use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::svcb::{
    Alpn, EchConfigList, IpHint, Mandatory, SvcParamKey, SvcParamValue,
};
use hickory_proto::rr::rdata::{HTTPS, NS, SOA, SVCB};
use hickory_proto::rr::{RData, Record, RecordType};

use super::*;
use crate::{AnswerError, FilteredAnswer, Rcode, clamp_ttl, filter_answer};

fn filter(query: &Query, upstream: &Message) -> Result<FilteredAnswer, AnswerError> {
    filter_answer(query, UPSTREAM_ID, &upstream.to_vec().unwrap(), BOUNDS)
}

#[test]
fn a_record_is_learned_and_reply_keeps_the_bottles_id_and_question() {
    let query = checked(0x1111, "WWW.example.test.", RecordType::A);
    let mut upstream = response(UPSTREAM_ID, "www.example.test.", RecordType::A);
    upstream.add_answer(a("www.example.test.", "198.51.100.7", 300));
    let answer = filter(&query, &upstream).unwrap();

    assert_eq!(answer.addrs, vec![(ip("198.51.100.7"), 300)]);
    assert!(answer.cnames.is_empty());
    assert_eq!(answer.rcode, Rcode::NoError);
    assert!(!answer.truncated);
    let reply = parse(&answer.reply);
    assert_eq!(reply.metadata.id, 0x1111);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert!(reply.metadata.recursion_available && reply.metadata.recursion_desired);
    assert_eq!(reply.queries[0].name().to_ascii(), "WWW.example.test.");
    assert_eq!(
        reply.answers,
        vec![a("www.example.test.", "198.51.100.7", 300)]
    );
}

#[test]
fn aaaa_path() {
    let query = checked(2, "v6.example.test.", RecordType::AAAA);
    let mut upstream = response(UPSTREAM_ID, "v6.example.test.", RecordType::AAAA);
    upstream.add_answer(aaaa("v6.example.test.", "2001:db8::7", 120));
    upstream.add_answer(aaaa("v6.example.test.", "2001:db8::8", 60));
    let answer = filter(&query, &upstream).unwrap();
    let want = vec![(ip("2001:db8::7"), 120), (ip("2001:db8::8"), 60)];
    assert_eq!(answer.addrs, want);
    assert_eq!(parse(&answer.reply).answers.len(), 2);
}

#[test]
fn ttls_are_clamped_for_the_kernel_and_capped_for_the_bottle() {
    let query = checked(3, "www.example.test.", RecordType::A);
    let mut upstream = response(UPSTREAM_ID, "www.example.test.", RecordType::A);
    upstream.add_answer(a("www.example.test.", "198.51.100.1", 5));
    upstream.add_answer(a("www.example.test.", "198.51.100.2", 86_400));
    let answer = filter(&query, &upstream).unwrap();
    let want = vec![(ip("198.51.100.1"), 30), (ip("198.51.100.2"), 3600)];
    assert_eq!(answer.addrs, want);
    let ttls: Vec<u32> = parse(&answer.reply).answers.iter().map(|r| r.ttl).collect();
    // Never raised for the bottle, lowered to the max: the kernel entry outlives its cache.
    assert_eq!(ttls, vec![5, 3600]);
}

#[test]
fn cname_chain_is_followed_and_unrelated_records_are_not_learned() {
    let query = checked(4, "www.example.test.", RecordType::A);
    let mut upstream = response(UPSTREAM_ID, "www.example.test.", RecordType::A);
    upstream.add_answer(cname("www.example.test.", "edge.cdn.test.", 60));
    upstream.add_answer(a("other.test.", "198.51.100.66", 60));
    upstream.add_answer(cname("EDGE.cdn.test.", "e1.cdn.test.", 60));
    upstream.add_answer(cname("unrelated.test.", "elsewhere.test.", 60));
    upstream.add_answer(a("e1.cdn.test.", "198.51.100.7", 60));
    upstream.add_additional(a("e1.cdn.test.", "198.51.100.99", 60));
    upstream.add_authority(Record::from_rdata(
        name("cdn.test."),
        60,
        RData::NS(NS(name("ns.cdn.test."))),
    ));
    let answer = filter(&query, &upstream).unwrap();

    assert_eq!(answer.addrs, vec![(ip("198.51.100.7"), 60)]);
    assert_eq!(answer.cnames, vec!["edge.cdn.test", "e1.cdn.test"]);
    let reply = parse(&answer.reply);
    let kept: Vec<String> = reply.answers.iter().map(|r| r.name.to_ascii()).collect();
    assert_eq!(
        kept,
        ["www.example.test.", "EDGE.cdn.test.", "e1.cdn.test."]
    );
    assert!(reply.authorities.is_empty() && reply.additionals.is_empty());
}

#[test]
fn cname_loops_and_long_chains_end() {
    let query = checked(5, "a.example.test.", RecordType::A);
    let mut upstream = response(UPSTREAM_ID, "a.example.test.", RecordType::A);
    upstream.add_answer(cname("a.example.test.", "b.example.test.", 60));
    upstream.add_answer(cname("b.example.test.", "a.example.test.", 60));
    upstream.add_answer(a("b.example.test.", "198.51.100.2", 60));
    let answer = filter(&query, &upstream).unwrap();
    assert_eq!(answer.cnames, vec!["b.example.test"]);
    assert_eq!(answer.addrs, vec![(ip("198.51.100.2"), 60)]);

    let mut upstream = response(UPSTREAM_ID, "a.example.test.", RecordType::A);
    let hop = |i: usize| format!("h{i}.example.test.");
    upstream.add_answer(cname("a.example.test.", &hop(1), 60));
    for i in 1..20 {
        upstream.add_answer(cname(&hop(i), &hop(i + 1), 60));
    }
    upstream.add_answer(a(&hop(20), "198.51.100.3", 60));
    let answer = filter(&query, &upstream).unwrap();
    assert_eq!(answer.cnames.len(), crate::MAX_CNAME_CHAIN);
    assert!(answer.addrs.is_empty());
}

#[test]
fn cname_query_returns_the_link_only() {
    let query = checked(6, "www.example.test.", RecordType::CNAME);
    let mut upstream = response(UPSTREAM_ID, "www.example.test.", RecordType::CNAME);
    upstream.add_answer(cname("www.example.test.", "edge.cdn.test.", 60));
    let answer = filter(&query, &upstream).unwrap();
    assert_eq!(answer.cnames, vec!["edge.cdn.test"]);
    assert!(answer.addrs.is_empty());
    assert_eq!(parse(&answer.reply).answers.len(), 1);
}

#[test]
fn mismatched_replies_are_errors() {
    let query = checked(7, "www.example.test.", RecordType::A);
    let mut good = response(UPSTREAM_ID, "www.example.test.", RecordType::A);
    good.add_answer(a("www.example.test.", "198.51.100.7", 60));
    assert!(filter(&query, &good).is_ok());

    let wrong_id = response(UPSTREAM_ID ^ 1, "www.example.test.", RecordType::A);
    let err = filter(&query, &wrong_id).unwrap_err();
    assert_eq!(err.reason(), "upstream_id_mismatch");

    let wrong_name = response(UPSTREAM_ID, "evil.test.", RecordType::A);
    let err = filter(&query, &wrong_name).unwrap_err();
    assert_eq!(err.reason(), "upstream_question_mismatch");

    let wrong_type = response(UPSTREAM_ID, "www.example.test.", RecordType::AAAA);
    let err = filter(&query, &wrong_type).unwrap_err();
    assert_eq!(err.reason(), "upstream_question_mismatch");

    let mut two = response(UPSTREAM_ID, "www.example.test.", RecordType::A);
    two.add_query(op::Query::query(name("evil.test."), RecordType::A));
    let err = filter(&query, &two).unwrap_err();
    assert_eq!(err.reason(), "upstream_question_mismatch");

    let mut not_response = good.clone();
    not_response.metadata.message_type = MessageType::Query;
    let err = filter(&query, &not_response).unwrap_err();
    assert_eq!(err.reason(), "upstream_not_a_response");

    let err = filter_answer(&query, UPSTREAM_ID, &[0xbe, 0xef, 0x81], BOUNDS).unwrap_err();
    assert_eq!(err.reason(), "upstream_malformed");
}

const ECH: &[u8] = b"\x00\x08ECHCONFIG-SECRET";

pub(super) fn svcb_with_ech(mandatory: Vec<SvcParamKey>) -> SVCB {
    let v4: Ipv4Addr = "198.51.100.7".parse().unwrap();
    let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
    SVCB::new(
        1,
        Name::root(),
        vec![
            (
                SvcParamKey::Mandatory,
                SvcParamValue::Mandatory(Mandatory(mandatory)),
            ),
            (
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(vec!["h2".into(), "http/1.1".into()])),
            ),
            (SvcParamKey::Port, SvcParamValue::Port(8443)),
            (
                SvcParamKey::Ipv4Hint,
                SvcParamValue::Ipv4Hint(IpHint(vec![A(v4)])),
            ),
            (
                SvcParamKey::EchConfigList,
                SvcParamValue::EchConfigList(EchConfigList(ECH.to_vec())),
            ),
            (
                SvcParamKey::Ipv6Hint,
                SvcParamValue::Ipv6Hint(IpHint(vec![AAAA(v6)])),
            ),
        ],
    )
}

fn keys(svcb: &SVCB) -> Vec<SvcParamKey> {
    svcb.svc_params.iter().map(|(k, _)| *k).collect()
}

#[test]
fn ech_is_stripped_from_https_and_other_params_kept() {
    let query = checked(8, "api.example.test.", RecordType::HTTPS);
    let mut upstream = response(UPSTREAM_ID, "api.example.test.", RecordType::HTTPS);
    let mandatory = vec![SvcParamKey::Alpn, SvcParamKey::EchConfigList];
    let rdata = RData::HTTPS(HTTPS(svcb_with_ech(mandatory)));
    upstream.add_answer(Record::from_rdata(name("api.example.test."), 300, rdata));
    let answer = filter(&query, &upstream).unwrap();

    assert_eq!(answer.ech_stripped, 1);
    assert!(answer.addrs.is_empty(), "hints are not learned");
    assert!(!answer.reply.windows(ECH.len()).any(|w| w == ECH));
    let reply = parse(&answer.reply);
    let RData::HTTPS(HTTPS(svcb)) = &reply.answers[0].data else {
        panic!("not HTTPS: {:?}", reply.answers[0]);
    };
    use SvcParamKey::*;
    assert_eq!(keys(svcb), [Mandatory, Alpn, Port, Ipv4Hint, Ipv6Hint]);
    let (_, SvcParamValue::Mandatory(kept)) = &svcb.svc_params[0] else {
        panic!("mandatory first");
    };
    assert_eq!(kept.0, [Alpn]);
    assert_eq!(svcb.svc_params[2].1, SvcParamValue::Port(8443));
}

#[test]
fn ech_is_stripped_from_svcb_and_empty_mandatory_goes() {
    let query = checked(9, "_8443._https.api.example.test.", RecordType::SVCB);
    let owner = "_8443._https.api.example.test.";
    let mut upstream = response(UPSTREAM_ID, owner, RecordType::SVCB);
    let rdata = RData::SVCB(svcb_with_ech(vec![SvcParamKey::EchConfigList]));
    upstream.add_answer(Record::from_rdata(name(owner), 300, rdata));
    let answer = filter(&query, &upstream).unwrap();
    assert_eq!(answer.ech_stripped, 1);
    let reply = parse(&answer.reply);
    let RData::SVCB(svcb) = &reply.answers[0].data else {
        panic!("not SVCB");
    };
    use SvcParamKey::*;
    assert_eq!(keys(svcb), [Alpn, Port, Ipv4Hint, Ipv6Hint]);
}

#[test]
fn nxdomain_keeps_soa_only() {
    let query = checked(10, "gone.example.test.", RecordType::A);
    let mut upstream = response(UPSTREAM_ID, "gone.example.test.", RecordType::A);
    upstream.metadata.response_code = ResponseCode::NXDomain;
    let soa = SOA::new(
        name("ns.example.test."),
        name("admin.example.test."),
        1,
        3600,
        600,
        86_400,
        300,
    );
    upstream.add_authority(Record::from_rdata(
        name("example.test."),
        86_400,
        RData::SOA(soa),
    ));
    upstream.add_additional(a("ns.example.test.", "198.51.100.53", 60));
    let answer = filter(&query, &upstream).unwrap();
    assert_eq!(answer.rcode, Rcode::NxDomain);
    assert!(answer.addrs.is_empty());
    let reply = parse(&answer.reply);
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(reply.authorities.len(), 1);
    assert_eq!(reply.authorities[0].ttl, 3600);
    assert!(reply.additionals.is_empty());
}

#[test]
fn upstream_failures_become_servfail_without_records() {
    for rcode in [
        ResponseCode::ServFail,
        ResponseCode::Refused,
        ResponseCode::FormErr,
    ] {
        let query = checked(11, "www.example.test.", RecordType::A);
        let mut upstream = response(UPSTREAM_ID, "www.example.test.", RecordType::A);
        upstream.metadata.response_code = rcode;
        upstream.add_answer(a("www.example.test.", "198.51.100.7", 60));
        let answer = filter(&query, &upstream).unwrap();
        assert_eq!(answer.rcode, Rcode::ServFail);
        assert!(answer.addrs.is_empty());
        assert!(parse(&answer.reply).answers.is_empty());
    }
}

#[test]
fn flags_truncation_and_edns() {
    let msg = with_edns(
        query_msg(12, "www.example.test.", RecordType::A),
        4096,
        true,
    );
    let query = check_query(&msg.to_vec().unwrap()).unwrap();
    let mut upstream = response(UPSTREAM_ID, "www.example.test.", RecordType::A);
    upstream.metadata.truncation = true;
    upstream.metadata.authentic_data = true;
    upstream.metadata.authoritative = true;
    upstream.add_answer(a("www.example.test.", "198.51.100.7", 60));
    let answer = filter(&query, &upstream).unwrap();
    assert!(answer.truncated);
    let reply = parse(&answer.reply);
    assert!(reply.metadata.truncation);
    assert!(!reply.metadata.authentic_data && !reply.metadata.authoritative);
    let edns = reply.edns.expect("OPT echoed");
    assert!(!edns.flags().dnssec_ok);
}

#[test]
fn oversized_udp_reply_is_truncated() {
    let mut upstream = response(UPSTREAM_ID, "many.example.test.", RecordType::AAAA);
    for i in 0..60 {
        upstream.add_answer(aaaa("many.example.test.", &format!("2001:db8::{i:x}"), 60));
    }
    let small = checked(13, "many.example.test.", RecordType::AAAA);
    let answer = filter(&small, &upstream).unwrap();
    assert_eq!(answer.addrs.len(), 60);
    assert!(answer.reply.len() > 512);
    let udp = parse(&answer.reply_for_udp(&small));
    assert!(udp.metadata.truncation && udp.answers.is_empty());
    assert_eq!(udp.metadata.id, 13);

    let msg = with_edns(
        query_msg(14, "many.example.test.", RecordType::AAAA),
        4096,
        false,
    );
    let large = check_query(&msg.to_vec().unwrap()).unwrap();
    let answer = filter(&large, &upstream).unwrap();
    assert_eq!(&*answer.reply_for_udp(&large), answer.reply.as_slice());
}

#[test]
fn clamp_ttl_bounds() {
    assert_eq!(clamp_ttl(5, 30, 3600), 30);
    assert_eq!(clamp_ttl(300, 30, 3600), 300);
    assert_eq!(clamp_ttl(u32::MAX, 30, 3600), 3600);
    assert_eq!(clamp_ttl(300, 600, 60), 60, "max wins, no panic");
}
