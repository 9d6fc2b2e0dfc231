//! Filtering an upstream reply: what the bottle sees and which addresses it may connect to.

use std::borrow::Cow;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::svcb::{Mandatory, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, SVCB};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::error::AnswerError;
use super::query::{Query, QueryType, name_string};
use super::reply::Rcode;
use super::{EDNS_UDP_PAYLOAD, MAX_CNAME_CHAIN};

/// Bounds on how long a learned address stays in the kernel allow map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlBounds {
    pub min: u32,
    pub max: u32,
}

/// `ttl` raised to `min` and lowered to `max`; `max` wins if `min > max`.
pub fn clamp_ttl(ttl: u32, min: u32, max: u32) -> u32 {
    ttl.max(min).min(max)
}

/// An upstream reply made fit for the bottle.
#[derive(Debug, Clone)]
pub struct FilteredAnswer {
    /// The reply to send to the bottle (over TCP; over UDP use [`Self::reply_for_udp`]).
    pub reply: Vec<u8>,
    /// Addresses to write into the kernel allow map before `reply` is sent, each with its
    /// TTL clamped to the [`TtlBounds`]: exactly the A/AAAA records in `reply`.
    pub addrs: Vec<(IpAddr, u32)>,
    /// The CNAME chain followed from the asked name, in order, lowercased without the
    /// trailing dot (the asked name itself not included).
    pub cnames: Vec<String>,
    pub rcode: Rcode,
    /// Upstream set TC: the answer may be incomplete (see [`filter_answer`]).
    pub truncated: bool,
    /// HTTPS/SVCB records whose `ech` parameter was removed.
    pub ech_stripped: usize,
}

impl FilteredAnswer {
    /// `reply` if it fits the bottle's UDP limit, else a reply with TC set and no records
    /// so the bottle retries over TCP. The addresses stay learned either way: they are
    /// the ones the TCP retry will teach.
    pub fn reply_for_udp(&self, query: &Query) -> Cow<'_, [u8]> {
        if self.reply.len() <= query.udp_limit() {
            Cow::Borrowed(&self.reply)
        } else {
            Cow::Owned(query.truncated_reply(self.rcode))
        }
    }
}

/// Checks an upstream reply against `query` (sent upstream with `upstream_id`) and builds
/// the reply for the bottle.
///
/// The reply keeps the bottle's id, question (case kept) and RD. Its answer section holds
/// only the CNAME chain that starts at the asked name and the records of the asked type
/// owned by a name on that chain; HTTPS/SVCB records lose their `ech` parameter (and its
/// entry in `mandatory`). The authority section keeps SOA records only (negative caching);
/// the additional section is dropped. Every TTL in the reply is lowered to `ttl.max` so
/// the bottle never caches an address longer than the kernel allows it, while `addrs`
/// carry the TTL clamped to both bounds: the kernel entry outlives the bottle's cache.
/// AA, AD and CD are clear, RA set, TC copied from upstream. Upstream NOERROR and NXDOMAIN
/// are kept; any other rcode becomes SERVFAIL with no records. The reply carries an OPT
/// record (no options, DO clear) when the query did.
///
/// Never panics, whatever the bytes. An id or question mismatch means a spoofed or stale
/// datagram: keep waiting for the real reply.
pub fn filter_answer(
    query: &Query,
    upstream_id: u16,
    upstream_reply: &[u8],
    ttl: TtlBounds,
) -> Result<FilteredAnswer, AnswerError> {
    // The header first, so a spoofed datagram is turned away before it is fully parsed.
    let header = Header::read(&mut BinDecoder::new(upstream_reply))
        .map_err(|source| AnswerError::Malformed { source })?;
    check_header(&header, upstream_id)?;
    let upstream =
        Message::from_vec(upstream_reply).map_err(|source| AnswerError::Malformed { source })?;
    let asked = query.question.name();
    let qtype = query.qtype.record_type();
    match upstream.queries.as_slice() {
        [q] if q.name() == asked && q.query_type() == qtype && q.query_class() == DNSClass::IN => {}
        _ => {
            return Err(AnswerError::QuestionMismatch {
                name: query.name.clone(),
            });
        }
    }

    let rcode = match upstream.metadata.response_code {
        ResponseCode::NoError => Rcode::NoError,
        ResponseCode::NXDomain => Rcode::NxDomain,
        _ => Rcode::ServFail,
    };
    let mut reply = Message::response(query.id, OpCode::Query);
    reply.metadata.recursion_desired = query.rd;
    reply.metadata.recursion_available = true;
    reply.metadata.truncation = upstream.metadata.truncation;
    reply.metadata.response_code = rcode.into();
    reply.queries.push(query.question.clone());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_PAYLOAD);
        reply.edns = Some(edns);
    }

    let mut cnames = Vec::new();
    let mut addrs: Vec<(IpAddr, u32)> = Vec::new();
    let mut ech_stripped = 0;
    if rcode != Rcode::ServFail {
        let chain = cname_chain(asked, &upstream.answers);
        cnames = chain.iter().skip(1).map(name_string).collect();
        for mut record in upstream.answers {
            if !on_chain(&record, &chain, query.qtype) {
                continue;
            }
            record.ttl = record.ttl.min(ttl.max);
            let learned = clamp_ttl(record.ttl, ttl.min, ttl.max);
            match &mut record.data {
                RData::A(A(ip)) => learn(&mut addrs, IpAddr::V4(*ip), learned),
                RData::AAAA(AAAA(ip)) => learn(&mut addrs, IpAddr::V6(*ip), learned),
                RData::HTTPS(HTTPS(svcb)) | RData::SVCB(svcb) => {
                    ech_stripped += usize::from(strip_ech(svcb));
                }
                _ => {}
            }
            reply.answers.push(record);
        }
        for mut record in upstream.authorities {
            if record.record_type() == RecordType::SOA && record.dns_class == DNSClass::IN {
                record.ttl = record.ttl.min(ttl.max);
                reply.authorities.push(record);
            }
        }
    }

    let bytes = reply.to_vec().map_err(|source| AnswerError::Encode {
        name: query.name.clone(),
        source,
    })?;
    Ok(FilteredAnswer {
        reply: bytes,
        addrs,
        cnames,
        rcode,
        truncated: upstream.metadata.truncation,
        ech_stripped,
    })
}

fn check_header(header: &Header, upstream_id: u16) -> Result<(), AnswerError> {
    let meta = &header.metadata;
    if meta.message_type != MessageType::Response || meta.op_code != OpCode::Query {
        return Err(AnswerError::NotAResponse);
    }
    if meta.id != upstream_id {
        return Err(AnswerError::IdMismatch {
            expected: upstream_id,
            got: meta.id,
        });
    }
    Ok(())
}

/// The asked name followed by the targets of the CNAME records that lead from it, at most
/// [`MAX_CNAME_CHAIN`] links; a loop ends the chain.
fn cname_chain(asked: &Name, answers: &[Record]) -> Vec<Name> {
    let mut chain = vec![asked.clone()];
    while chain.len() <= MAX_CNAME_CHAIN {
        let Some(current) = chain.last() else { break };
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(CNAME(target)) if r.dns_class == DNSClass::IN && r.name == *current => {
                Some(target)
            }
            _ => None,
        });
        match next {
            Some(target) if !chain.contains(target) => chain.push(target.clone()),
            _ => break,
        }
    }
    chain
}

/// Whether `record` belongs in the reply: a link of the chain, or a record of the asked
/// type owned by a name on the chain.
fn on_chain(record: &Record, chain: &[Name], qtype: QueryType) -> bool {
    if record.dns_class != DNSClass::IN {
        return false;
    }
    let Some(pos) = chain.iter().position(|n| *n == record.name) else {
        return false;
    };
    match &record.data {
        RData::CNAME(CNAME(target)) => chain.get(pos + 1) == Some(target),
        _ => qtype != QueryType::Cname && record.record_type() == qtype.record_type(),
    }
}

fn learn(addrs: &mut Vec<(IpAddr, u32)>, ip: IpAddr, ttl: u32) {
    match addrs.iter_mut().find(|(known, _)| *known == ip) {
        Some((_, known_ttl)) => *known_ttl = (*known_ttl).max(ttl),
        None => addrs.push((ip, ttl)),
    }
}

/// Removes the `ech` SvcParam (key 5, RFC 9460 / draft-ietf-tls-svcb-ech) and its entry in
/// `mandatory` (a `mandatory` left empty goes too: RFC 9460 §8 forbids an empty list).
/// Without ECH the bottle's ClientHello carries the real SNI, which the TLS proxy needs.
/// Returns whether an `ech` parameter was present.
fn strip_ech(svcb: &mut SVCB) -> bool {
    let before = svcb.svc_params.len();
    svcb.svc_params
        .retain(|(key, _)| *key != SvcParamKey::EchConfigList);
    for (_, value) in &mut svcb.svc_params {
        if let SvcParamValue::Mandatory(Mandatory(keys)) = value {
            keys.retain(|key| *key != SvcParamKey::EchConfigList);
        }
    }
    svcb.svc_params.retain(
        |(_, value)| !matches!(value, SvcParamValue::Mandatory(Mandatory(keys)) if keys.is_empty()),
    );
    svcb.svc_params.len() != before
}
