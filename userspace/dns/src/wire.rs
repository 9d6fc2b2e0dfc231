//! Hand-encoded replies that carry at most a question and an OPT record: refusals, truncated
//! replies and upstream queries. Encoding them by hand keeps them infallible, and the
//! question goes out uncompressed, exactly as it was parsed.

use hickory_proto::op;

/// The header fields cork sets on the messages it builds itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub truncated: bool,
    pub rd: bool,
    pub ra: bool,
    /// Full 12-bit rcode: the low 4 bits go in the header, the rest in the OPT record.
    pub rcode: u16,
}

/// Encodes a header, an optional question and, when `opt` is set, an OPT record advertising
/// [`super::EDNS_UDP_PAYLOAD`] with no options and DO clear.
pub(crate) fn encode(head: Head, question: Option<&op::Query>, opt: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + 260 + 11);
    out.extend_from_slice(&head.id.to_be_bytes());
    let mut b2 = (head.opcode & 0x0f) << 3;
    if head.response {
        b2 |= 0x80;
    }
    if head.truncated {
        b2 |= 0x02;
    }
    if head.rd {
        b2 |= 0x01;
    }
    let mut b3 = (head.rcode & 0x0f) as u8;
    if head.ra {
        b3 |= 0x80;
    }
    out.extend_from_slice(&[b2, b3]);
    let qdcount = u16::from(question.is_some());
    let arcount = u16::from(opt);
    for count in [qdcount, 0, 0, arcount] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    if let Some(q) = question {
        push_question(&mut out, q);
    }
    if opt {
        push_opt(&mut out, (head.rcode >> 4) as u8);
    }
    out
}

fn push_question(out: &mut Vec<u8>, q: &op::Query) {
    // Names come from the wire through hickory, which caps labels at 63 bytes and names at
    // 255, so each length fits its byte.
    for label in q.name().iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out.extend_from_slice(&u16::from(q.query_type()).to_be_bytes());
    out.extend_from_slice(&u16::from(q.query_class()).to_be_bytes());
}

/// RFC 6891 §6.1.2: root owner, type OPT (41), CLASS = UDP payload size, TTL = extended
/// rcode, version 0 and flags (DO clear), no RDATA.
fn push_opt(out: &mut Vec<u8>, rcode_high: u8) {
    out.push(0);
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&super::EDNS_UDP_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[rcode_high, 0, 0, 0]);
    out.extend_from_slice(&0u16.to_be_bytes());
}
