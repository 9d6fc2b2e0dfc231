//! Parsing and bounding a query from the bottle.

use hickory_proto::op::{self, Header, Message, MessageType, OpCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError};

use super::error::{Echo, QueryRefusal};
use super::{MAX_LABEL_LEN, MAX_NAME_LEN};

/// The query types a bottle may ask for: what a stub resolver needs to open a connection.
///
/// A and AAAA give addresses; CNAME is asked by some tools that walk chains themselves;
/// HTTPS and SVCB (RFC 9460) are asked by browsers and curl before connecting, and
/// answering them (ECH stripped) avoids a timeout on every connection. Every other type is
/// refused: TXT, NULL and the like carry arbitrary data in both directions, ANY amplifies,
/// and MX, SRV, PTR, NS... lead to names and addresses the policy did not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryType {
    A,
    Aaaa,
    Cname,
    Https,
    Svcb,
}

impl QueryType {
    /// Every allowed type, for tests and documentation.
    pub const ALL: [Self; 5] = [Self::A, Self::Aaaa, Self::Cname, Self::Https, Self::Svcb];

    /// The allowed type for `rtype`, if it is one.
    pub fn from_record_type(rtype: RecordType) -> Option<Self> {
        match rtype {
            RecordType::A => Some(Self::A),
            RecordType::AAAA => Some(Self::Aaaa),
            RecordType::CNAME => Some(Self::Cname),
            RecordType::HTTPS => Some(Self::Https),
            RecordType::SVCB => Some(Self::Svcb),
            _ => None,
        }
    }

    pub fn record_type(self) -> RecordType {
        match self {
            Self::A => RecordType::A,
            Self::Aaaa => RecordType::AAAA,
            Self::Cname => RecordType::CNAME,
            Self::Https => RecordType::HTTPS,
            Self::Svcb => RecordType::SVCB,
        }
    }

    /// Stable name for audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Https => "HTTPS",
            Self::Svcb => "SVCB",
        }
    }
}

/// The EDNS(0) parameters the bottle sent. Options are read and dropped: none is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEdns {
    /// The UDP payload size the bottle accepts (at least 512).
    pub udp_payload: u16,
    /// The DO bit. cork never forwards it: replies carry no DNSSEC records and AD is clear,
    /// since stripping `ech` invalidates signatures anyway.
    pub dnssec_ok: bool,
}

/// A query that passed [`check_query`].
#[derive(Debug, Clone)]
pub struct Query {
    pub id: u16,
    /// Lowercased, no trailing dot, only letters, digits, `-`, `_` and dots.
    pub name: String,
    pub qtype: QueryType,
    /// Recursion desired, echoed in the reply.
    pub rd: bool,
    /// Present when the query had an OPT record; the reply then carries one too.
    pub edns: Option<ClientEdns>,
    /// The question as the bottle wrote it (case kept), echoed in replies.
    pub(crate) question: op::Query,
}

impl Query {
    /// Largest UDP reply the bottle accepts: 512 without EDNS, else its advertised size.
    pub fn udp_limit(&self) -> usize {
        self.edns
            .map_or(512, |e| usize::from(e.udp_payload.max(512)))
    }
}

/// Parses a packet from the bottle and decides whether it is a query cork may forward.
/// Never panics, whatever the bytes.
pub fn check_query(packet: &[u8]) -> Result<Query, QueryRefusal> {
    let mut decoder = BinDecoder::new(packet);
    let Ok(header) = Header::read(&mut decoder) else {
        return Err(QueryRefusal::TooShort { len: packet.len() });
    };
    let meta = header.metadata;
    if meta.message_type == MessageType::Response {
        return Err(QueryRefusal::Response { id: meta.id });
    }
    let mut echo = Box::new(Echo {
        id: meta.id,
        opcode: u8::from(meta.op_code),
        rd: meta.recursion_desired,
        edns: false,
        question: None,
    });
    if meta.op_code != OpCode::Query {
        let opcode = echo.opcode;
        return Err(QueryRefusal::Opcode { echo, opcode });
    }
    // Checked before anything is read: a forged count must not make us parse (or
    // allocate for) thousands of questions.
    if header.counts.queries != 1 {
        let count = header.counts.queries;
        return Err(QueryRefusal::QuestionCount { echo, count });
    }
    let question = match op::Query::read(&mut decoder) {
        Ok(q) => q,
        Err(source) => return Err(question_error(echo, source)),
    };
    echo.question = Some(question.clone());

    // The rest of the message matters only for its OPT record; records in the other
    // sections are parsed (a malformed query is refused as such) and dropped.
    let counts = header.counts;
    let edns = (|| {
        Message::read_records(
            &mut decoder,
            usize::from(counts.answers),
            false,
            OpCode::Query,
        )?;
        Message::read_records(
            &mut decoder,
            usize::from(counts.authorities),
            false,
            OpCode::Query,
        )?;
        let (_, edns, _) = Message::read_records(
            &mut decoder,
            usize::from(counts.additionals),
            true,
            OpCode::Query,
        )?;
        Ok::<_, DecodeError>(edns)
    })();
    let edns = match edns {
        Ok(edns) => edns,
        Err(source) => return Err(QueryRefusal::Malformed { echo, source }),
    };
    echo.edns = edns.is_some();
    if let Some(e) = &edns
        && e.version() != 0
    {
        let version = e.version();
        return Err(QueryRefusal::EdnsVersion { echo, version });
    }

    if question.query_class() != DNSClass::IN {
        let class = u16::from(question.query_class());
        return Err(QueryRefusal::Class { echo, class });
    }
    let Some(qtype) = QueryType::from_record_type(question.query_type()) else {
        let qtype = question.query_type();
        return Err(QueryRefusal::Qtype { echo, qtype });
    };
    check_name(question.name(), echo)?;

    Ok(Query {
        id: meta.id,
        name: name_string(question.name()),
        qtype,
        rd: meta.recursion_desired,
        edns: edns.map(|e| ClientEdns {
            udp_payload: e.max_payload(),
            dnssec_ok: e.flags().dnssec_ok,
        }),
        question,
    })
}

/// hickory refuses over-long names and labels while decoding; say so rather than
/// "malformed". A length byte 0x40..=0xBF is the reserved label type RFC 1035 leaves to
/// labels over 63 bytes, so that is how a 64-byte label reaches us.
fn question_error(echo: Box<Echo>, source: DecodeError) -> QueryRefusal {
    match source {
        DecodeError::DomainNameTooLong(_) => QueryRefusal::NameTooLong { echo },
        DecodeError::LabelBytesTooLong(_) => QueryRefusal::LabelTooLong { echo },
        DecodeError::UnrecognizedLabelCode(b) if (0x40..0xc0).contains(&b) => {
            QueryRefusal::LabelTooLong { echo }
        }
        source => QueryRefusal::Malformed { echo, source },
    }
}

/// Host names only: the policy matches names as text, so a label holding a dot, a space or
/// a NUL would match one name and resolve another. Lengths are checked again here (hickory
/// enforces them while decoding) so the limits stand even if that changes.
fn check_name(name: &Name, echo: Box<Echo>) -> Result<(), QueryRefusal> {
    let labels: Vec<&[u8]> = name.iter().collect();
    if labels.is_empty() {
        return Err(QueryRefusal::NameInvalid { echo });
    }
    if labels.iter().any(|l| l.len() > MAX_LABEL_LEN) {
        return Err(QueryRefusal::LabelTooLong { echo });
    }
    let len = labels.iter().map(|l| l.len()).sum::<usize>() + labels.len() - 1;
    if len > MAX_NAME_LEN {
        return Err(QueryRefusal::NameTooLong { echo });
    }
    let host_byte = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    if labels
        .iter()
        .any(|l| l.is_empty() || !l.iter().all(host_byte))
    {
        return Err(QueryRefusal::NameInvalid { echo });
    }
    Ok(())
}

/// A name as lowercase text without the trailing dot. Bytes other than letters, digits,
/// `-` and `_` (only possible in names from upstream or refused queries) are written
/// `\DDD` as in RFC 1035 presentation format, so text never hides a label boundary.
pub(crate) fn name_string(name: &Name) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(char::from(b.to_ascii_lowercase()));
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
    }
    out
}
