//! Request bodies in a `Content-Encoding` are scanned decoded (a secret gzipped is still a
//! secret) while the encoded bytes are what goes upstream.

use http::HeaderMap;
use http::header::CONTENT_ENCODING;

use super::BoxError;
use super::body::Decode;
use cork_dlp::decode::{BodyDecoder, DecodeLimits, MAX_LAYERS, parse_content_encoding};

/// A body decoder for the request's `Content-Encoding`, `None` for identity, or the audit
/// reason for refusing a coding cork cannot see through (it would be a blind spot).
pub fn decoder_for(headers: &HeaderMap) -> Result<Option<Box<dyn Decode>>, &'static str> {
    let mut codings = Vec::new();
    for v in headers.get_all(CONTENT_ENCODING) {
        let v = v.to_str().map_err(|_| "unsupported_content_encoding")?;
        codings.extend(parse_content_encoding(v).map_err(|_| "unsupported_content_encoding")?);
    }
    if codings.len() > MAX_LAYERS {
        return Err("unsupported_content_encoding");
    }
    let d = BodyDecoder::new(&codings, DecodeLimits::default());
    if codings.is_empty() {
        return Ok(None);
    }
    Ok(Some(Box::new(Decoder(Some(d)))))
}

struct Decoder(Option<BodyDecoder>);

impl Decode for Decoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
        let d = self.0.as_mut().ok_or("body decoder used after its end")?;
        Ok(d.feed(chunk, &mut |b: &[u8]| out.extend_from_slice(b))?)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError> {
        let d = self.0.take().ok_or("body decoder ended twice")?;
        Ok(d.finish(&mut |b: &[u8]| out.extend_from_slice(b))?)
    }
}
