//! Parsers never panic: every prefix of valid messages (linkerd's `check_all_prefixes`),
//! and arbitrary or mutated bytes (proptest).

use hickory_proto::rr::rdata::HTTPS;
use hickory_proto::rr::rdata::svcb::SvcParamKey;
use hickory_proto::rr::{RData, Record, RecordType};
use proptest::prelude::*;

use super::answer::svcb_with_ech;
use super::*;
use crate::{Rcode, filter_answer, refuse};

fn valid_queries() -> Vec<Vec<u8>> {
    vec![
        query_msg(1, "www.example.test.", RecordType::A)
            .to_vec()
            .unwrap(),
        with_edns(
            query_msg(2, "api.example.test.", RecordType::HTTPS),
            1232,
            true,
        )
        .to_vec()
        .unwrap(),
    ]
}

fn valid_reply() -> (Query, Vec<u8>) {
    let query = checked(3, "www.example.test.", RecordType::A);
    let mut upstream = response(UPSTREAM_ID, "www.example.test.", RecordType::A);
    upstream.add_answer(cname("www.example.test.", "edge.cdn.test.", 60));
    upstream.add_answer(a("edge.cdn.test.", "198.51.100.7", 60));
    upstream.add_answer(aaaa("edge.cdn.test.", "2001:db8::7", 60));
    (query, upstream.to_vec().unwrap())
}

fn https_reply() -> (Query, Vec<u8>) {
    let query = checked(4, "api.example.test.", RecordType::HTTPS);
    let mut upstream = response(UPSTREAM_ID, "api.example.test.", RecordType::HTTPS);
    let mandatory = vec![SvcParamKey::Alpn, SvcParamKey::EchConfigList];
    let rdata = RData::HTTPS(HTTPS(svcb_with_ech(mandatory)));
    upstream.add_answer(Record::from_rdata(name("api.example.test."), 300, rdata));
    (query, upstream.to_vec().unwrap())
}

/// Whatever check_query says, its consequences hold together.
fn check_consistent(packet: &[u8]) {
    match check_query(packet) {
        Ok(query) => {
            assert!(query.name.len() <= crate::MAX_NAME_LEN);
            assert!(query.name.split('.').all(|l| (1..=63).contains(&l.len())));
            for rcode in [Rcode::Refused, Rcode::NxDomain, Rcode::ServFail] {
                parse(&refuse(&query, rcode));
            }
            check_query(&query.upstream_query(9)).unwrap();
        }
        Err(refused) => {
            assert!(!refused.reason().is_empty());
            if let Some(reply) = refused.reply() {
                parse(&reply);
            }
        }
    }
}

#[test]
fn every_prefix_of_a_query() {
    for packet in valid_queries() {
        for end in 0..packet.len() {
            assert!(
                check_query(&packet[..end]).is_err(),
                "prefix {end} accepted"
            );
            check_consistent(&packet[..end]);
        }
        check_query(&packet).unwrap();
    }
}

#[test]
fn every_prefix_of_a_reply() {
    let (query, reply) = valid_reply();
    for end in 0..reply.len() {
        let result = filter_answer(&query, UPSTREAM_ID, &reply[..end], BOUNDS);
        assert!(result.is_err(), "prefix {end} accepted");
    }
    let (https_query, https) = https_reply();
    for end in 0..https.len() {
        assert!(filter_answer(&https_query, UPSTREAM_ID, &https[..end], BOUNDS).is_err());
    }
    let answer = filter_answer(&query, UPSTREAM_ID, &reply, BOUNDS).unwrap();
    // The AAAA record does not answer an A query: not returned, not learned.
    assert_eq!(answer.addrs, vec![(ip("198.51.100.7"), 60)]);
}

proptest! {
    #[test]
    fn random_bytes_never_panic_check_query(packet in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_consistent(&packet);
    }

    #[test]
    fn random_bytes_never_panic_filter_answer(packet in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (query, _) = valid_reply();
        let _ = filter_answer(&query, UPSTREAM_ID, &packet, BOUNDS);
    }

    #[test]
    fn mutated_queries_never_panic(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut packet = valid_queries().swap_remove(which);
        for (at, byte) in edits {
            let at = at % packet.len();
            packet[at] = byte;
        }
        check_consistent(&packet);
    }

    #[test]
    fn mutated_replies_never_panic(
        https in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let (query, mut reply) = if https { https_reply() } else { valid_reply() };
        for (at, byte) in edits {
            let at = at % reply.len();
            reply[at] = byte;
        }
        if let Ok(answer) = filter_answer(&query, UPSTREAM_ID, &reply, BOUNDS) {
            let parsed = parse(&answer.reply);
            prop_assert_eq!(parsed.metadata.id, query.id);
            let learned = parsed.answers.iter().filter(|r| {
                matches!(r.record_type(), RecordType::A | RecordType::AAAA)
            });
            prop_assert!(learned.count() >= answer.addrs.len());
        }
    }
}
