//! Why a query is refused or an upstream reply rejected, with stable reason strings for
//! audit events.

use hickory_proto::ProtoError;
use hickory_proto::op;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::DecodeError;

/// What a reply needs from a refused packet (boxed in [`QueryRefusal`] to keep it small): its header fields, whether it carried EDNS,
/// and its question when that could be parsed.
#[derive(Debug, Clone)]
pub struct Echo {
    pub(crate) id: u16,
    pub(crate) opcode: u8,
    pub(crate) rd: bool,
    pub(crate) edns: bool,
    pub(crate) question: Option<op::Query>,
}

impl Echo {
    /// The id of the refused query.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Whether the refused query's question could be parsed (and so is echoed).
    pub fn has_question(&self) -> bool {
        self.question.is_some()
    }
}

/// Why a packet from the bottle is not forwarded upstream.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueryRefusal {
    #[error("DNS packet of {len} bytes is too short for a header")]
    TooShort { len: usize },
    #[error("malformed DNS query")]
    Malformed {
        echo: Box<Echo>,
        #[source]
        source: DecodeError,
    },
    #[error("DNS message from the bottle is a response, not a query")]
    Response { id: u16 },
    #[error("DNS opcode {opcode} is not QUERY")]
    Opcode { echo: Box<Echo>, opcode: u8 },
    #[error("DNS query has {count} questions; exactly one is required")]
    QuestionCount { echo: Box<Echo>, count: u16 },
    #[error("DNS query class {class} is not IN")]
    Class { echo: Box<Echo>, class: u16 },
    #[error("DNS query type {qtype} is not one of A, AAAA, CNAME, HTTPS, SVCB")]
    Qtype { echo: Box<Echo>, qtype: RecordType },
    #[error("DNS query name is longer than 253 bytes")]
    NameTooLong { echo: Box<Echo> },
    #[error("DNS query name has a label longer than 63 bytes")]
    LabelTooLong { echo: Box<Echo> },
    #[error("DNS query name is empty or has a byte other than a letter, digit, '-' or '_'")]
    NameInvalid { echo: Box<Echo> },
    #[error("EDNS version {version} is not supported")]
    EdnsVersion { echo: Box<Echo>, version: u8 },
}

impl QueryRefusal {
    /// Stable reason for audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooShort { .. } | Self::Malformed { .. } => "malformed",
            Self::Response { .. } | Self::Opcode { .. } => "not_a_query",
            Self::QuestionCount { count: 0, .. } => "no_question",
            Self::QuestionCount { .. } => "multiple_questions",
            Self::Class { .. } => "class_refused",
            Self::Qtype { .. } => "qtype_refused",
            Self::NameTooLong { .. } => "name_too_long",
            Self::LabelTooLong { .. } => "label_too_long",
            Self::NameInvalid { .. } => "name_invalid",
            Self::EdnsVersion { .. } => "edns_version",
        }
    }

    /// The refused packet's id, when its header could be read.
    pub fn id(&self) -> Option<u16> {
        match self {
            Self::TooShort { .. } => None,
            Self::Response { id } => Some(*id),
            _ => self.echo().map(Echo::id),
        }
    }

    /// The refused query's name (lowercased, no trailing dot) when its question could be
    /// parsed, for audit. Bytes outside letters, digits, `-` and `_` are written `\DDD`.
    pub fn name(&self) -> Option<String> {
        let question = self.echo()?.question.as_ref()?;
        Some(super::query::name_string(question.name()))
    }

    pub(crate) fn echo(&self) -> Option<&Echo> {
        match self {
            Self::TooShort { .. } | Self::Response { .. } => None,
            Self::Malformed { echo, .. }
            | Self::Opcode { echo, .. }
            | Self::QuestionCount { echo, .. }
            | Self::Class { echo, .. }
            | Self::Qtype { echo, .. }
            | Self::NameTooLong { echo }
            | Self::LabelTooLong { echo }
            | Self::NameInvalid { echo }
            | Self::EdnsVersion { echo, .. } => Some(echo.as_ref()),
        }
    }
}

/// Why an upstream reply cannot be passed to the bottle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("upstream DNS reply is malformed")]
    Malformed {
        #[source]
        source: DecodeError,
    },
    #[error("upstream DNS message is not a response to a standard query")]
    NotAResponse,
    #[error("upstream DNS reply has id {got}, the query was sent with id {expected}")]
    IdMismatch { expected: u16, got: u16 },
    #[error("upstream DNS reply's question does not match the query for {name}")]
    QuestionMismatch { name: String },
    #[error("encoding the filtered DNS reply for {name}")]
    Encode {
        name: String,
        #[source]
        source: ProtoError,
    },
}

impl AnswerError {
    /// Stable reason for audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "upstream_malformed",
            Self::NotAResponse => "upstream_not_a_response",
            Self::IdMismatch { .. } => "upstream_id_mismatch",
            Self::QuestionMismatch { .. } => "upstream_question_mismatch",
            Self::Encode { .. } => "encode_failed",
        }
    }
}
