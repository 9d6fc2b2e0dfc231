//! The body decoder never panics, and what it decodes does not depend on how the body is
//! chunked. The first byte picks the codings and the chunk size; the rest is the body.
#![no_main]

use cork_dlp::decode::{BodyDecoder, ContentCoding, DecodeLimits};
use libfuzzer_sys::fuzz_target;

/// Decoded bytes, or `None` on error (where the error surfaces may depend on chunking).
fn decode(codings: &[ContentCoding], body: &[u8], size: usize) -> Option<Vec<u8>> {
    // Small limits keep each run fast; bombs are still refused.
    let limits = DecodeLimits {
        max_ratio: 64,
        max_total: 4 << 20,
    };
    let mut d = BodyDecoder::new(codings, limits);
    let mut out = Vec::new();
    for chunk in body.chunks(size.max(1)) {
        d.feed(chunk, &mut |b| out.extend_from_slice(b)).ok()?;
    }
    d.finish(&mut |b| out.extend_from_slice(b)).ok()?;
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let [pick, body @ ..] = data else {
        return;
    };
    use ContentCoding::{Brotli, Deflate, Gzip};
    let codings: &[ContentCoding] = match pick % 6 {
        0 => &[Gzip],
        1 => &[Deflate],
        2 => &[Brotli],
        3 => &[Gzip, Brotli],
        4 => &[Deflate, Gzip],
        _ => &[],
    };
    let size = usize::from(pick / 6) + 1;
    let whole = decode(codings, body, body.len());
    let split = decode(codings, body, size);
    // The ratio limit is checked as bytes arrive, so a split can trip it where the whole
    // body does not: only compare successes.
    if let (Some(w), Some(s)) = (&whole, &split) {
        assert_eq!(w, s);
    }
});
