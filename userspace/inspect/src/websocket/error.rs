//! Why the frame reader refused a stream, and the stable name audit events give it.

/// Why a stream was refused. Each is final: the reader refuses everything after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    #[error("WebSocket frame with reserved bits set (no extension was negotiated)")]
    ReservedBits,
    #[error("WebSocket frame with reserved opcode {opcode:#x}")]
    ReservedOpcode { opcode: u8 },
    #[error("WebSocket control frame of {len} bytes (at most 125)")]
    ControlTooLong { len: u64 },
    #[error("fragmented WebSocket control frame")]
    ControlFragmented,
    #[error("unmasked WebSocket frame from the client")]
    UnmaskedClientFrame,
    #[error("masked WebSocket frame from the server")]
    MaskedServerFrame,
    #[error("WebSocket frame length with the most significant bit set")]
    LengthMsbSet,
    #[error("WebSocket frame length not in its shortest encoding")]
    NonMinimalLength,
    #[error("WebSocket continuation frame outside a fragmented message")]
    UnexpectedContinuation,
    #[error("new WebSocket data frame inside a fragmented message")]
    ExpectedContinuation,
    #[error("WebSocket message longer than {max} bytes")]
    MessageTooLarge { max: u64 },
    #[error("WebSocket close frame with a 1-byte payload")]
    BadClosePayload,
    #[error("WebSocket frame after a close frame")]
    AfterClose,
}

impl WsError {
    /// A short, stable name for audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            WsError::ReservedBits => "ws-reserved-bits",
            WsError::ReservedOpcode { .. } => "ws-reserved-opcode",
            WsError::ControlTooLong { .. } => "ws-control-too-long",
            WsError::ControlFragmented => "ws-control-fragmented",
            WsError::UnmaskedClientFrame => "ws-unmasked-client-frame",
            WsError::MaskedServerFrame => "ws-masked-server-frame",
            WsError::LengthMsbSet => "ws-length-msb-set",
            WsError::NonMinimalLength => "ws-non-minimal-length",
            WsError::UnexpectedContinuation => "ws-unexpected-continuation",
            WsError::ExpectedContinuation => "ws-expected-continuation",
            WsError::MessageTooLarge { .. } => "ws-message-too-large",
            WsError::BadClosePayload => "ws-bad-close-payload",
            WsError::AfterClose => "ws-after-close",
        }
    }
}
