//! Request bodies in a `Content-Encoding` are scanned decoded (a secret gzipped is still a
//! secret) while the encoded bytes are what goes upstream.

use http::HeaderMap;
use http::header::CONTENT_ENCODING;

use super::BoxError;
use super::body::Decode;
use crate::dlp::{BodyDecoder, DecodeLimits, parse_content_encoding};

/// A body decoder for the request's `Content-Encoding`, `None` for identity, or the audit
/// reason for refusing a coding cork cannot see through.
pub fn decoder_for(headers: &HeaderMap) -> Result<Option<Box<dyn Decode>>, &'static str> {
    let mut codings = Vec::new();
    for v in headers.get_all(CONTENT_ENCODING) {
        let v = v.to_str().map_err(|_| "bad_content_encoding")?;
        codings.extend(parse_content_encoding(v).map_err(|_| "unsupported_content_encoding")?);
    }
    if codings.is_empty() {
        return Ok(None);
    }
    if codings.len() > 2 {
        return Err("unsupported_content_encoding");
    }
    Ok(Some(Box::new(Decoder(BodyDecoder::new(
        &codings,
        DecodeLimits::default(),
    )))))
}

struct Decoder(BodyDecoder);

impl Decode for Decoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
        self.0
            .feed(chunk, &mut |b: &[u8]| out.extend_from_slice(b))
            .map_err(|e| Box::new(e) as BoxError)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError> {
        let d = std::mem::replace(&mut self.0, BodyDecoder::new(&[], DecodeLimits::default()));
        d.finish(&mut |b: &[u8]| out.extend_from_slice(b))
            .map_err(|e| Box::new(e) as BoxError)
    }
}
