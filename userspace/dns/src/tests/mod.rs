//! Tests build messages with hickory-proto (or by hand, where hickory refuses to encode
//! what a hostile bottle may send) and check what cork makes of them. Names end in
//! `.test`; addresses are in 198.51.100.0/24 and 2001:db8::/32.

mod answer;
mod fuzz;
mod query;

use std::net::IpAddr;

use hickory_proto::op::{self, Edns, Message, MessageType, OpCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Query, TtlBounds, check_query};

pub(super) const BOUNDS: TtlBounds = TtlBounds { min: 30, max: 3600 };
pub(super) const UPSTREAM_ID: u16 = 0xbeef;

pub(super) fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

pub(super) fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub(super) fn query_msg(id: u16, qname: &str, rtype: RecordType) -> Message {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(op::Query::query(name(qname), rtype));
    msg
}

pub(super) fn with_edns(mut msg: Message, payload: u16, dnssec_ok: bool) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    edns.set_dnssec_ok(dnssec_ok);
    msg.set_edns(edns);
    msg
}

pub(super) fn checked(id: u16, qname: &str, rtype: RecordType) -> Query {
    check_query(&query_msg(id, qname, rtype).to_vec().unwrap()).unwrap()
}

/// A query encoded by hand: hickory will not encode over-long names or labels.
pub(super) fn raw_query(id: u16, labels: &[&[u8]], qtype: u16, qclass: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in labels {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend_from_slice(label);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    out
}

/// An upstream reply to the query for `qname`, with no records yet.
pub(super) fn response(id: u16, qname: &str, rtype: RecordType) -> Message {
    let mut msg = Message::response(id, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.metadata.recursion_available = true;
    msg.add_query(op::Query::query(name(qname), rtype));
    msg
}

pub(super) fn a(owner: &str, addr: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(addr.parse().unwrap())))
}

pub(super) fn aaaa(owner: &str, addr: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(addr.parse().unwrap())))
}

pub(super) fn cname(owner: &str, target: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
}

pub(super) fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap()
}
