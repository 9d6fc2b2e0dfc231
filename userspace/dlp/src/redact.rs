//! Redaction for `redact` mode.
//!
//! Limits: [`redact`] rewrites only the bytes of one buffer. A finding that begins before
//! the buffer or ends after it is redacted only where it overlaps the buffer, so a caller
//! that already forwarded the start of a secret has leaked that part: hold back the bytes
//! past [`StreamScan::settled`](super::StreamScan::settled) and redact before forwarding.
//! The marker's length differs from the match's, so a `Content-Length` must be recomputed
//! (or the body re-chunked).

use super::Finding;

/// What replaces each redacted run of bytes.
pub const REDACTION_MARKER: &[u8] = b"[REDACTED]";

/// `chunk` (which starts at stream offset `chunk_start`) with the bytes of every finding
/// replaced by [`REDACTION_MARKER`]; overlapping or touching findings share one marker.
pub fn redact(chunk: &[u8], chunk_start: u64, findings: &[Finding]) -> Vec<u8> {
    let chunk_end = chunk_start + chunk.len() as u64;
    let mut spans: Vec<(usize, usize)> = findings
        .iter()
        .filter(|f| f.start < chunk_end && f.end() > chunk_start)
        .map(|f| {
            let s = f.start.max(chunk_start) - chunk_start;
            let e = f.end().min(chunk_end) - chunk_start;
            // Both fit: they lie within `chunk`.
            (s as usize, e as usize)
        })
        .collect();
    spans.sort_unstable();
    let mut out = Vec::with_capacity(chunk.len());
    let mut copied = 0;
    let mut i = 0;
    while i < spans.len() {
        let (s, mut e) = spans[i];
        i += 1;
        while i < spans.len() && spans[i].0 <= e {
            e = e.max(spans[i].1);
            i += 1;
        }
        out.extend_from_slice(&chunk[copied..s]);
        out.extend_from_slice(REDACTION_MARKER);
        copied = e;
    }
    out.extend_from_slice(&chunk[copied..]);
    out
}
