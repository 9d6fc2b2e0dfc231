//! Request bodies in a `Content-Encoding` are scanned decoded (a secret gzipped is still a
//! secret) while the encoded bytes are what goes upstream.

use http::HeaderMap;
use http::header::CONTENT_ENCODING;

use super::body::Decode;

/// A body decoder for the request's `Content-Encoding`, `None` for identity, or the audit
/// reason for refusing a coding cork cannot see through.
pub fn decoder_for(headers: &HeaderMap) -> Result<Option<Box<dyn Decode>>, &'static str> {
    for v in headers.get_all(CONTENT_ENCODING) {
        let v = v.to_str().map_err(|_| "bad_content_encoding")?;
        if v.split(',')
            .any(|c| !c.trim().eq_ignore_ascii_case("identity"))
        {
            return Err("unsupported_content_encoding");
        }
    }
    Ok(None)
}
