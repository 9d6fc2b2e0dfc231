//! Streaming `Content-Encoding` decoding, so that DLP scans what the peer will read, not
//! the compressed bytes that hide it.
//!
//! A [`BodyDecoder`] turns compressed chunks into decoded chunks as they arrive, through a
//! fixed output buffer per layer: memory does not grow with the body or with how much it
//! expands. [`DecodeLimits`] stop a decompression bomb from costing unbounded CPU, and
//! anything the peer's decoder would reject or ignore (truncation, trailing bytes, bad
//! checksums) is an error rather than bytes that go unscanned.

mod brotli;
mod flate;

use std::fmt;

/// One content coding (RFC 9110 §8.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCoding {
    Identity,
    Gzip,
    /// zlib-wrapped deflate per the RFC; raw deflate is accepted too, as browsers do.
    Deflate,
    Brotli,
}

impl fmt::Display for ContentCoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContentCoding::Identity => "identity",
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
            ContentCoding::Brotli => "br",
        })
    }
}

/// More layers than this are refused: no real server stacks more than two, and each layer
/// costs a decoder state and an output buffer.
pub const MAX_LAYERS: usize = 2;

/// Decoded bytes a body may reach before the ratio limit applies: short bodies compress
/// far better than any sane ratio limit (a few kilobytes of zeros compress ~1000:1).
pub const RATIO_GRACE: u64 = 1 << 20;

/// Bytes each layer decodes at a time: the memory it holds besides its decoder state, and
/// how far past a limit decoding can get before the limit is noticed.
const OUT_CHUNK: usize = 16 << 10;

/// How far a body may expand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Decoded bytes per compressed byte fed, checked once [`RATIO_GRACE`] bytes are
    /// decoded.
    pub max_ratio: u64,
    /// Decoded bytes in all.
    pub max_total: u64,
}

impl Default for DecodeLimits {
    /// Generous for real text (JSON rarely passes 20:1 even with brotli) while keeping a
    /// bomb's cost to a fraction of a second per body.
    fn default() -> Self {
        DecodeLimits {
            max_ratio: 256,
            max_total: 256 << 20,
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("Content-Encoding: unsupported coding {coding:?}")]
    UnknownCoding { coding: String },
    #[error("Content-Encoding: {count} codings, at most {max} are supported")]
    TooManyLayers { count: usize, max: usize },
    #[error("{coding} body: invalid data ({reason})")]
    Corrupt {
        coding: ContentCoding,
        reason: &'static str,
    },
    #[error("{coding} body: invalid deflate data")]
    Inflate {
        coding: ContentCoding,
        #[source]
        source: flate2::DecompressError,
    },
    #[error("{coding} body: ends before the compressed stream does")]
    Truncated { coding: ContentCoding },
    #[error("{coding} body: bytes after the end of the compressed stream")]
    TrailingData { coding: ContentCoding },
    #[error(
        "decompression bomb: {decoded} bytes decoded from {compressed} compressed \
         (limits: ratio {max_ratio}, total {max_total})"
    )]
    Bomb {
        decoded: u64,
        compressed: u64,
        max_ratio: u64,
        max_total: u64,
    },
    #[error("body decoder used after an earlier error")]
    AfterError,
}

/// Parses a `Content-Encoding` value: codings in the order they were applied, `identity`
/// dropped. Empty list elements are skipped (RFC 9110 §5.6.1); `x-gzip` is `gzip`.
pub fn parse_content_encoding(header: &str) -> Result<Vec<ContentCoding>, DecodeError> {
    let mut out = Vec::new();
    for token in header.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let coding = match token.to_ascii_lowercase().as_str() {
            "identity" => continue,
            "gzip" | "x-gzip" => ContentCoding::Gzip,
            "deflate" => ContentCoding::Deflate,
            "br" => ContentCoding::Brotli,
            _ => {
                return Err(DecodeError::UnknownCoding {
                    coding: token.to_string(),
                });
            }
        };
        out.push(coding);
    }
    if out.len() > MAX_LAYERS {
        return Err(DecodeError::TooManyLayers {
            count: out.len(),
            max: MAX_LAYERS,
        });
    }
    Ok(out)
}

/// Where a layer sends what it decoded.
type Sink<'a> = dyn FnMut(&[u8]) -> Result<(), DecodeError> + 'a;

/// One decoding step.
enum Layer {
    Deflate(flate::Deflate),
    Gzip(flate::Gzip),
    Brotli(brotli::Brotli),
}

impl Layer {
    fn push(&mut self, input: &[u8], out: &mut Sink<'_>) -> Result<(), DecodeError> {
        match self {
            Layer::Deflate(d) => d.push(input, out),
            Layer::Gzip(g) => g.push(input, out),
            Layer::Brotli(b) => b.push(input, out),
        }
    }

    /// Whether the stream ended properly, given that no more input comes.
    fn finish(&self) -> Result<(), DecodeError> {
        match self {
            Layer::Deflate(d) => d.finish(),
            Layer::Gzip(g) => g.finish(),
            Layer::Brotli(b) => b.finish(),
        }
    }
}

/// Decodes one body, chunk by chunk.
pub struct BodyDecoder {
    /// Outermost coding first (the reverse of the header's order).
    layers: Vec<Layer>,
    /// Per layer, bytes it has decoded (checked against the limits: an inner layer of
    /// empty deflate blocks could decode to nothing while the outer one expands).
    decoded: Vec<u64>,
    limits: DecodeLimits,
    compressed: u64,
    /// Any bytes at all were fed: an empty body is valid whatever its coding.
    fed: bool,
    failed: bool,
}

impl fmt::Debug for BodyDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyDecoder")
            .field("layers", &self.layers.len())
            .field("decoded", &self.decoded)
            .field("compressed", &self.compressed)
            .field("failed", &self.failed)
            .finish()
    }
}

impl BodyDecoder {
    /// A decoder for a body with `codings` applied in this order (as
    /// [`parse_content_encoding`] returns them). `Identity` entries are skipped; with no
    /// other coding, bytes pass through unchanged and the limits do not apply.
    pub fn new(codings: &[ContentCoding], limits: DecodeLimits) -> Self {
        let layers: Vec<Layer> = codings
            .iter()
            .rev()
            .filter_map(|c| match c {
                ContentCoding::Identity => None,
                ContentCoding::Gzip => Some(Layer::Gzip(flate::Gzip::new())),
                ContentCoding::Deflate => Some(Layer::Deflate(flate::Deflate::new())),
                ContentCoding::Brotli => Some(Layer::Brotli(brotli::Brotli::new())),
            })
            .collect();
        BodyDecoder {
            decoded: vec![0; layers.len()],
            layers,
            limits,
            compressed: 0,
            fed: false,
            failed: false,
        }
    }

    /// Decodes the next chunk of the body, passing decoded bytes to `out` as they come
    /// (in pieces of at most 16 KiB). After an error the decoder refuses further use.
    pub fn feed(
        &mut self,
        compressed: &[u8],
        out: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        if self.failed {
            return Err(DecodeError::AfterError);
        }
        self.fed |= !compressed.is_empty();
        self.compressed += compressed.len() as u64;
        let limits = self.limits;
        let total_in = self.compressed;
        let result = run(
            &mut self.layers,
            &mut self.decoded,
            compressed,
            &mut |layer_out| {
                out(layer_out);
                Ok(())
            },
            &|decoded| check(limits, decoded, total_in),
        );
        self.failed = result.is_err();
        result
    }

    /// Ends the body: an error if any layer's stream is incomplete. Every decoded byte has
    /// already gone to a `feed` call's `out`; this one is for symmetry with the proxy's
    /// body loop and receives nothing today.
    pub fn finish(self, out: &mut dyn FnMut(&[u8])) -> Result<(), DecodeError> {
        let _ = out;
        if self.failed {
            return Err(DecodeError::AfterError);
        }
        if !self.fed {
            return Ok(());
        }
        self.layers.iter().try_for_each(Layer::finish)
    }
}

/// Feeds `input` through `layers`, checking each layer's output count with `limit`.
fn run(
    layers: &mut [Layer],
    decoded: &mut [u64],
    input: &[u8],
    out: &mut Sink<'_>,
    limit: &dyn Fn(u64) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let (Some((first, rest)), Some((count, rest_counts))) =
        (layers.split_first_mut(), decoded.split_first_mut())
    else {
        return out(input);
    };
    first.push(input, &mut |piece| {
        *count += piece.len() as u64;
        limit(*count)?;
        run(rest, rest_counts, piece, out, limit)
    })
}

fn check(limits: DecodeLimits, decoded: u64, compressed: u64) -> Result<(), DecodeError> {
    let ratio_ok = decoded <= RATIO_GRACE || decoded <= compressed.saturating_mul(limits.max_ratio);
    if ratio_ok && decoded <= limits.max_total {
        Ok(())
    } else {
        Err(DecodeError::Bomb {
            decoded,
            compressed,
            max_ratio: limits.max_ratio,
            max_total: limits.max_total,
        })
    }
}
