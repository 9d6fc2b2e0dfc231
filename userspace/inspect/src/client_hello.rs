//! Reading a TLS ClientHello from the first bytes of a connection, before any TLS is
//! terminated: enough to decide pass-through / inspect / deny by SNI without holding the
//! connection's bytes hostage.
//!
//! [`peek_client_hello`] is called on everything buffered so far. It returns
//! [`HelloError::Incomplete`] while more bytes are needed (a ClientHello may span several
//! TLS records), [`ClientHelloInfo`] once the whole ClientHello has arrived, and any other
//! [`HelloError`] as a final verdict. It never looks past [`MAX_PEEK_LEN`] bytes, so a
//! caller that buffers up to that bound always gets a final answer.
//!
//! The parser is strict where leniency would let two readers disagree about the name (a
//! smuggling vector between cork and the upstream server): duplicate extensions, more than
//! one `host_name`, a name that is not a plain DNS host name, or bytes left over anywhere
//! are [`HelloError::Malformed`]. Wire formats: RFC 8446 §4.1.2 and §5.1 (records,
//! ClientHello), RFC 6066 §3 (server_name), RFC 7301 §3.1 (ALPN),
//! draft-ietf-tls-esni §5 (encrypted_client_hello).

mod body;
mod name;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

pub use name::{NameError, normalize_host_name};

/// The most bytes [`peek_client_hello`] reads: the ClientHello's records, headers included,
/// must end within this many bytes of the start of the connection or the answer is
/// [`HelloError::TooLarge`]. Real ClientHellos are 0.5–3 KiB (a post-quantum key share adds
/// about 1.2 KiB); the bound leaves room for large session tickets.
pub const MAX_PEEK_LEN: usize = 16 * 1024;

/// TLS record header: type (1), legacy_record_version (2), length (2). RFC 8446 §5.1.
const RECORD_HEADER_LEN: usize = 5;
/// Handshake message header: msg_type (1), length (uint24). RFC 8446 §4.
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest plaintext record fragment (2^14 bytes). RFC 8446 §5.1.
const MAX_FRAGMENT_LEN: usize = 1 << 14;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// Request lines a plain-HTTP client may start with, followed by a space. `PRI ` is the
/// HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0`).
const HTTP_METHODS: [&[u8]; 10] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
    b"PRI ",
];

/// What cork needs from a ClientHello to decide a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientHelloInfo {
    /// The `host_name` from server_name, lowercased, without a trailing dot, validated by
    /// [`normalize_host_name`]. `None` when the client sent no server_name extension.
    pub sni: Option<String>,
    /// ALPN protocol names in the client's order (RFC 7301), as bytes: names are opaque on
    /// the wire and need not be UTF-8 (GREASE values are not), and rustls takes bytes too.
    pub alpn: Vec<Vec<u8>>,
    /// An encrypted_client_hello extension (0xfe0d) or an earlier ECH/ESNI draft code
    /// point (0xfe08..=0xfe0c, 0xffce) is present. The client may be hiding the name it
    /// really wants behind [`sni`](Self::sni) (the ECH public name); GREASE ECH, which
    /// browsers send when they hold no ECH config, looks the same by design.
    pub has_ech: bool,
    /// `legacy_version` from the ClientHello (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// The supported_versions extension as sent, GREASE values included; empty when absent.
    pub supported_versions: Vec<u16>,
    /// `legacy_record_version` of the first record (0x0301 or 0x0303 in practice).
    pub record_version: u16,
    /// Bytes at the start of the buffer that hold the ClientHello's records, headers
    /// included. Anything after them was sent after the ClientHello.
    pub records_len: usize,
}

impl ClientHelloInfo {
    /// Whether the client offers the ALPN protocol `proto` (e.g. `b"h2"`).
    pub fn offers_alpn(&self, proto: &[u8]) -> bool {
        self.alpn.iter().any(|p| p == proto)
    }

    /// Whether the client offers TLS 1.3 (0x0304 in supported_versions).
    pub fn offers_tls13(&self) -> bool {
        self.supported_versions.contains(&0x0304)
    }
}

/// Why [`peek_client_hello`] has no ClientHello (yet). Every variant but
/// [`Incomplete`](Self::Incomplete) is final: more bytes will not change it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// Read more and call again. `needed` is the total buffer length at which another call
    /// can make progress (never more than [`MAX_PEEK_LEN`]); `None` means at least one more
    /// byte. The parser currently always knows, but callers must accept `None`.
    #[error("need more bytes for the ClientHello (at least {needed:?} in all)")]
    Incomplete { needed: Option<usize> },
    /// The first bytes are not a TLS handshake record.
    #[error("the connection does not start with a TLS handshake record")]
    NotTls,
    /// The first bytes are an HTTP/1.x request line or the HTTP/2 preface: plain HTTP where
    /// TLS was expected.
    #[error("plain HTTP where TLS was expected")]
    LooksLikeHttp,
    /// The first handshake message is not a ClientHello.
    #[error("the first TLS handshake message has type {msg_type}, not ClientHello")]
    NotClientHello { msg_type: u8 },
    /// The bytes break the TLS wire format or one of the rules cork adds (one name, no
    /// duplicate extensions, a plain DNS host name). `what` says which, for humans.
    #[error("malformed ClientHello: {what}")]
    Malformed { what: &'static str },
    /// The ClientHello does not end within [`MAX_PEEK_LEN`] bytes.
    #[error("the ClientHello does not end within the first {MAX_PEEK_LEN} bytes")]
    TooLarge,
}

impl HelloError {
    /// A stable, machine-readable reason for audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Incomplete { .. } => "incomplete",
            Self::NotTls => "not_tls",
            Self::LooksLikeHttp => "plain_http",
            Self::NotClientHello { .. } => "not_client_hello",
            Self::Malformed { .. } => "malformed",
            Self::TooLarge => "too_large",
        }
    }

    /// Whether this is a verdict (true) or a request to read more (false).
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Incomplete { .. })
    }
}

/// Reads the ClientHello at the start of `buf`, everything the client has sent so far.
///
/// Bytes after the ClientHello's last record are not looked at (a TLS 1.3 client may send
/// a change_cipher_spec record or early data right behind it). The buffer is not consumed:
/// for pass-through the caller forwards it unchanged; for inspection it replays it into the
/// TLS server.
pub fn peek_client_hello(buf: &[u8]) -> Result<ClientHelloInfo, HelloError> {
    let Some(&first) = buf.first() else {
        return Err(incomplete(1));
    };
    if first != CONTENT_TYPE_HANDSHAKE {
        return Err(classify_not_tls(buf));
    }
    // The handshake bytes so far, borrowed while they all come from one record (the usual
    // case) and copied only when the ClientHello spans records (RFC 8446 §5.1 allows it).
    let mut handshake: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut record_version = None;
    let mut pos = 0;
    loop {
        if let Some(total) = handshake_len(&handshake)?
            && handshake.len() >= total
        {
            if handshake.len() > total {
                // Nothing may follow a ClientHello before the server answers.
                return Err(malformed(
                    "handshake: bytes after the ClientHello in its record",
                ));
            }
            let record_version = record_version.unwrap_or_default();
            return body::parse(&handshake[HANDSHAKE_HEADER_LEN..], record_version, pos);
        }
        let fragment = next_record(buf, pos)?;
        if record_version.is_none() {
            record_version = Some(u16::from_be_bytes([buf[1], buf[2]]));
        }
        if handshake.is_empty() {
            handshake = Cow::Borrowed(fragment);
        } else {
            handshake.to_mut().extend_from_slice(fragment);
        }
        pos += RECORD_HEADER_LEN + fragment.len();
    }
}

/// The payload of the handshake record starting at `pos`, once it is all in `buf`.
fn next_record(buf: &[u8], pos: usize) -> Result<&[u8], HelloError> {
    let header_end = pos + RECORD_HEADER_LEN;
    if header_end > MAX_PEEK_LEN {
        return Err(HelloError::TooLarge);
    }
    let Some(header) = buf.get(pos..header_end) else {
        return Err(incomplete(header_end));
    };
    // Handshake records only until the ClientHello ends (RFC 8446 §5.1: handshake messages
    // are not interleaved with other record types); the major version is 3 for SSL 3.0
    // through TLS 1.3.
    if header[0] != CONTENT_TYPE_HANDSHAKE || header[1] != 3 {
        return Err(if pos == 0 {
            HelloError::NotTls
        } else {
            malformed("record: not a TLS handshake record before the ClientHello ended")
        });
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len == 0 {
        return Err(malformed("record: empty handshake record"));
    }
    if len > MAX_FRAGMENT_LEN {
        return Err(malformed("record: longer than 2^14 bytes"));
    }
    let end = header_end + len;
    if end > MAX_PEEK_LEN {
        return Err(HelloError::TooLarge);
    }
    buf.get(header_end..end).ok_or(incomplete(end))
}

/// The length of the ClientHello message, header included, once its header has arrived.
fn handshake_len(handshake: &[u8]) -> Result<Option<usize>, HelloError> {
    if let Some(&msg_type) = handshake.first()
        && msg_type != HANDSHAKE_CLIENT_HELLO
    {
        return Err(HelloError::NotClientHello { msg_type });
    }
    let Some(&[_, a, b, c]) = handshake.first_chunk::<HANDSHAKE_HEADER_LEN>() else {
        return Ok(None);
    };
    let body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    // At least one record header precedes the message, so a body this long cannot end
    // within MAX_PEEK_LEN; say so now rather than after buffering it.
    if RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + body_len > MAX_PEEK_LEN {
        return Err(HelloError::TooLarge);
    }
    Ok(Some(HANDSHAKE_HEADER_LEN + body_len))
}

/// Plain HTTP gets its own verdict so the refusal can say what happened; while the bytes
/// are still a prefix of a request method, wait for the rest.
fn classify_not_tls(buf: &[u8]) -> HelloError {
    if HTTP_METHODS.iter().any(|m| buf.starts_with(m)) {
        return HelloError::LooksLikeHttp;
    }
    let shortest = HTTP_METHODS
        .iter()
        .filter(|m| m.starts_with(buf))
        .map(|m| m.len())
        .min();
    match shortest {
        Some(len) => incomplete(len),
        None => HelloError::NotTls,
    }
}

fn incomplete(needed: usize) -> HelloError {
    HelloError::Incomplete {
        needed: Some(needed),
    }
}

fn malformed(what: &'static str) -> HelloError {
    HelloError::Malformed { what }
}
