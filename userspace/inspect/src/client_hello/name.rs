//! One normalisation for every name the proxy compares: the SNI here, and (by the proxy)
//! the Host / :authority host, so that "the same name" means the same bytes on both sides.

/// The longest host name, in presentation form without the trailing dot (RFC 1035 §2.3.4);
/// the DNS proxy applies the same bound.
const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Why a name is not a plain DNS host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("host name is empty")]
    Empty,
    #[error("host name is longer than 253 bytes")]
    TooLong,
    #[error("host name has an empty label or one longer than 63 bytes")]
    BadLabel,
    #[error("host name is not ASCII (internationalised names must be sent as xn-- A-labels)")]
    NotAscii,
    #[error("host name has a byte other than a letter, digit, '-', '_' or '.'")]
    BadByte,
    #[error("host name is an IP address literal")]
    IpLiteral,
}

impl NameError {
    /// The `what` of the [`HelloError::Malformed`](super::HelloError::Malformed) a bad SNI
    /// gives.
    pub(super) fn sni_what(self) -> &'static str {
        match self {
            Self::Empty => "server_name: empty host_name",
            Self::TooLong => "server_name: host_name longer than 253 bytes",
            Self::BadLabel => "server_name: host_name label empty or longer than 63 bytes",
            Self::NotAscii => "server_name: host_name not ASCII",
            Self::BadByte => "server_name: host_name has a byte not allowed in a host name",
            Self::IpLiteral => "server_name: host_name is an IP address literal",
        }
    }
}

/// Checks that `name` is a plain DNS host name and returns it lowercased, without a
/// trailing dot.
///
/// - One trailing dot is removed: RFC 6066 §3 says HostName has none, but `a.test.` is the
///   same fully qualified name as `a.test` and some clients send it. Policy, leaf
///   certificates and the Host check all see the name without it.
/// - Letters, digits, `-` and `_` in labels of 1 to 63 bytes, 253 bytes in all: what the
///   DNS proxy resolves, so a name that passes here could also have been resolved.
/// - Non-ASCII is refused: internationalised names travel as `xn--` A-labels.
/// - IP literals are refused (RFC 6066 §3 forbids them in HostName): anything that parses as
///   an address, and, as URL parsers do (WHATWG URL, IPv4 parser), any name whose last
///   label is all digits or `0x` plus hex digits, since `127.1` or `0x7f000001` reach an
///   address in many clients.
pub fn normalize_host_name(name: &[u8]) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if !name.is_ascii() {
        return Err(NameError::NotAscii);
    }
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    // ASCII was checked above, so this cannot fail; a failure would be a BadByte anyway.
    let text = std::str::from_utf8(name).map_err(|_| NameError::BadByte)?;
    if text.parse::<std::net::IpAddr>().is_ok() || text.starts_with('[') || text.contains(':') {
        return Err(NameError::IpLiteral);
    }
    let host_byte = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    let mut last = &[][..];
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(NameError::BadLabel);
        }
        if !label.iter().all(host_byte) {
            return Err(NameError::BadByte);
        }
        last = label;
    }
    if numeric_label(last) {
        return Err(NameError::IpLiteral);
    }
    Ok(text.to_ascii_lowercase())
}

/// A label a URL parser reads as a number: decimal digits, or `0x`/`0X` and hex digits
/// (possibly none: WHATWG reads a bare `0x` as zero).
fn numeric_label(label: &[u8]) -> bool {
    if let Some(hex) = label
        .strip_prefix(b"0x")
        .or_else(|| label.strip_prefix(b"0X"))
    {
        return hex.iter().all(u8::is_ascii_hexdigit);
    }
    label.iter().all(u8::is_ascii_digit)
}
