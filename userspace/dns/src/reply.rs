//! Replies cork writes itself (refusals, truncation) and the query it sends upstream.

use hickory_proto::op::ResponseCode;

use super::error::{Echo, QueryRefusal};
use super::query::Query;
use super::wire::{self, Head};

/// The response codes cork sends to a bottle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rcode {
    NoError,
    /// The query could not be parsed, or did not have exactly one question.
    FormErr,
    /// Upstream failed or gave an unusable reply.
    ServFail,
    /// The name does not exist (upstream said so, or the policy prefers this to REFUSED).
    NxDomain,
    /// An opcode other than QUERY.
    NotImp,
    /// The policy denies the name, or the query type/class/name shape is refused.
    Refused,
    /// EDNS version other than 0 (RFC 6891 §6.1.3); needs an OPT record, which cork adds.
    BadVers,
}

impl Rcode {
    /// Stable name for audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoError => "NOERROR",
            Self::FormErr => "FORMERR",
            Self::ServFail => "SERVFAIL",
            Self::NxDomain => "NXDOMAIN",
            Self::NotImp => "NOTIMP",
            Self::Refused => "REFUSED",
            Self::BadVers => "BADVERS",
        }
    }

    /// The 12-bit code on the wire.
    pub fn code(self) -> u16 {
        let code: ResponseCode = self.into();
        u16::from(code)
    }
}

impl From<Rcode> for ResponseCode {
    fn from(rcode: Rcode) -> Self {
        match rcode {
            Rcode::NoError => Self::NoError,
            Rcode::FormErr => Self::FormErr,
            Rcode::ServFail => Self::ServFail,
            Rcode::NxDomain => Self::NXDomain,
            Rcode::NotImp => Self::NotImp,
            Rcode::Refused => Self::Refused,
            Rcode::BadVers => Self::BADVERS,
        }
    }
}

/// A reply to `query` with no records and `rcode`: REFUSED or NXDOMAIN for a policy
/// denial, SERVFAIL when upstream is down. Same id, question (case kept) and RD as the
/// query; an OPT record when the query had one.
pub fn refuse(query: &Query, rcode: Rcode) -> Vec<u8> {
    wire::encode(
        reply_head(query.id, 0, query.rd, rcode, false),
        Some(&query.question),
        query.edns.is_some(),
    )
}

impl QueryRefusal {
    /// The reply to send for this refusal, or `None` when the packet must be dropped: too
    /// short to have an id, or itself a response (answering it could start a loop).
    ///
    /// FORMERR for malformed packets and question counts other than one, NOTIMP for other
    /// opcodes, BADVERS for EDNS versions other than 0, REFUSED for the rest. The question
    /// is echoed when it could be parsed.
    pub fn reply(&self) -> Option<Vec<u8>> {
        let echo: &Echo = self.echo()?;
        let rcode = match self {
            Self::Malformed { .. } | Self::QuestionCount { .. } => Rcode::FormErr,
            Self::Opcode { .. } => Rcode::NotImp,
            Self::EdnsVersion { .. } => Rcode::BadVers,
            _ => Rcode::Refused,
        };
        let head = reply_head(echo.id, echo.opcode, echo.rd, rcode, false);
        Some(wire::encode(head, echo.question.as_ref(), echo.edns))
    }
}

impl Query {
    /// The query to send upstream, built from the parsed question alone: `upstream_id`
    /// (pass a fresh random id per upstream query, and the same to
    /// [`filter_answer`](super::filter_answer)), the lowercased name, RD set, and an OPT
    /// record advertising [`EDNS_UDP_PAYLOAD`](super::EDNS_UDP_PAYLOAD) with no options
    /// and DO clear. Nothing else the bottle sent is forwarded.
    pub fn upstream_query(&self, upstream_id: u16) -> Vec<u8> {
        let mut question = self.question.clone();
        question.name = question.name.to_lowercase();
        let head = Head {
            id: upstream_id,
            response: false,
            opcode: 0,
            truncated: false,
            rd: true,
            ra: false,
            rcode: 0,
        };
        wire::encode(head, Some(&question), true)
    }

    /// A reply with TC set and no records, for when the full reply does not fit the
    /// bottle's UDP limit: the bottle retries over TCP.
    pub(crate) fn truncated_reply(&self, rcode: Rcode) -> Vec<u8> {
        wire::encode(
            reply_head(self.id, 0, self.rd, rcode, true),
            Some(&self.question),
            self.edns.is_some(),
        )
    }
}

fn reply_head(id: u16, opcode: u8, rd: bool, rcode: Rcode, truncated: bool) -> Head {
    Head {
        id,
        response: true,
        opcode,
        truncated,
        rd,
        ra: true,
        rcode: rcode.code(),
    }
}
