//! `deflate` (zlib or raw) and `gzip` layers over flate2's low-level inflater, which
//! writes into a buffer we size, unlike its `Read`/`Write` adapters.

use flate2::{Crc, Decompress, FlushDecompress, Status};

use super::{ContentCoding, DecodeError, OUT_CHUNK, Sink};

/// Inflates one deflate stream (raw, or zlib-wrapped when `zlib`) into `out`; returns the
/// bytes of `input` used and whether the stream ended.
fn inflate(
    z: &mut Decompress,
    buf: &mut [u8],
    coding: ContentCoding,
    mut input: &[u8],
    out: &mut dyn FnMut(&[u8]) -> Result<(), DecodeError>,
) -> Result<(usize, bool), DecodeError> {
    let start_len = input.len();
    loop {
        let (before_in, before_out) = (z.total_in(), z.total_out());
        let status = z
            .decompress(input, buf, FlushDecompress::None)
            .map_err(|source| DecodeError::Inflate { coding, source })?;
        // Both fit: bounded by `input.len()` and `buf.len()`.
        let used = (z.total_in() - before_in) as usize;
        let made = (z.total_out() - before_out) as usize;
        input = &input[used..];
        if made > 0 {
            out(&buf[..made])?;
        }
        if status == Status::StreamEnd {
            return Ok((start_len - input.len(), true));
        }
        // A full buffer may mean more output is pending even with no input left.
        if (input.is_empty() && made < buf.len()) || (used == 0 && made == 0) {
            return Ok((start_len - input.len(), false));
        }
    }
}

/// `deflate`: zlib per RFC 9110, or raw deflate (some servers send it), told apart by
/// whether the first two bytes form a valid zlib header (RFC 1950 §2.2).
pub(super) struct Deflate {
    state: DeflateState,
    buf: Vec<u8>,
}

enum DeflateState {
    /// Fewer than two bytes seen.
    Sniff(Vec<u8>),
    Inflating(Box<Decompress>),
    Done,
}

impl Deflate {
    pub fn new() -> Deflate {
        Deflate {
            state: DeflateState::Sniff(Vec::with_capacity(2)),
            buf: vec![0; OUT_CHUNK],
        }
    }

    pub fn push(&mut self, mut input: &[u8], out: &mut Sink<'_>) -> Result<(), DecodeError> {
        const CODING: ContentCoding = ContentCoding::Deflate;
        if let DeflateState::Sniff(head) = &mut self.state {
            let take = (2 - head.len()).min(input.len());
            head.extend_from_slice(&input[..take]);
            input = &input[take..];
            if head.len() < 2 {
                return Ok(());
            }
            let head = std::mem::take(head);
            let zlib = head[0] & 0x0f == 8
                && head[0] >> 4 <= 7
                && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
            let mut z = Box::new(Decompress::new(zlib));
            let (_, ended) = inflate(&mut z, &mut self.buf, CODING, &head, out)?;
            self.state = if ended {
                DeflateState::Done
            } else {
                DeflateState::Inflating(z)
            };
        }
        match &mut self.state {
            DeflateState::Sniff(_) => unreachable!("sniffing ends above"),
            DeflateState::Inflating(z) => {
                let (used, ended) = inflate(z, &mut self.buf, CODING, input, out)?;
                if ended {
                    self.state = DeflateState::Done;
                    if used < input.len() {
                        return Err(DecodeError::TrailingData { coding: CODING });
                    }
                }
                Ok(())
            }
            DeflateState::Done if input.is_empty() => Ok(()),
            DeflateState::Done => Err(DecodeError::TrailingData { coding: CODING }),
        }
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.state {
            DeflateState::Done => Ok(()),
            _ => Err(DecodeError::Truncated {
                coding: ContentCoding::Deflate,
            }),
        }
    }
}

/// `gzip` (RFC 1952): header, raw deflate, CRC-32 and length trailer; several members in
/// a row decode as their concatenation, as zlib's `gunzip` does.
pub(super) struct Gzip {
    state: GzState,
    /// Header bytes seen, for the optional header CRC.
    header_crc: Crc,
    /// Decoded bytes of the current member, for the trailer check.
    crc: Crc,
    z: Box<Decompress>,
    buf: Vec<u8>,
}

/// Where in a member the parser is. Header fields are skipped byte by byte, so nothing
/// in them (names, comments, extra fields) is buffered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GzState {
    /// `n` bytes of the 10-byte fixed header seen; `flags` once byte 3 is.
    Fixed {
        n: u8,
        flags: u8,
    },
    /// FEXTRA length: `n` of its 2 bytes seen.
    ExtraLen {
        n: u8,
        len: u16,
        flags: u8,
    },
    Extra {
        left: u16,
        flags: u8,
    },
    Name {
        flags: u8,
    },
    Comment {
        flags: u8,
    },
    HeaderCrc {
        n: u8,
        crc: u16,
    },
    Body,
    Trailer {
        n: u8,
        bytes: [u8; 8],
    },
    /// A member ended; another may follow.
    End,
}

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;
/// Reserved flag bits: RFC 1952 says a decoder must reject them.
const FRESERVED: u8 = 0xe0;

impl Gzip {
    pub fn new() -> Gzip {
        Gzip {
            state: GzState::Fixed { n: 0, flags: 0 },
            header_crc: Crc::new(),
            crc: Crc::new(),
            z: Box::new(Decompress::new(false)),
            buf: vec![0; OUT_CHUNK],
        }
    }

    pub fn push(&mut self, mut input: &[u8], out: &mut Sink<'_>) -> Result<(), DecodeError> {
        while !input.is_empty() {
            if self.state == GzState::Body {
                let crc = &mut self.crc;
                let (used, ended) = inflate(
                    &mut self.z,
                    &mut self.buf,
                    ContentCoding::Gzip,
                    input,
                    &mut |piece| {
                        crc.update(piece);
                        out(piece)
                    },
                )?;
                input = &input[used..];
                if !ended {
                    // All input used; the rest of the body comes with the next chunk.
                    return Ok(());
                }
                self.state = GzState::Trailer {
                    n: 0,
                    bytes: [0; 8],
                };
                continue;
            }
            let b = input[0];
            input = &input[1..];
            self.header_byte(b)?;
        }
        Ok(())
    }

    /// Advances the header/trailer parser by one byte.
    fn header_byte(&mut self, b: u8) -> Result<(), DecodeError> {
        let corrupt = |reason| DecodeError::Corrupt {
            coding: ContentCoding::Gzip,
            reason,
        };
        let in_header = !matches!(
            self.state,
            GzState::HeaderCrc { .. } | GzState::Trailer { .. } | GzState::End
        );
        if in_header {
            self.header_crc.update(&[b]);
        }
        self.state = match self.state {
            GzState::End => {
                // A new member: start over.
                self.header_crc = Crc::new();
                self.header_crc.update(&[b]);
                self.crc = Crc::new();
                self.z.reset(false);
                return self.fixed(0, 0, b);
            }
            GzState::Fixed { n, flags } => return self.fixed(n, flags, b),
            GzState::ExtraLen { n: 0, flags, .. } => GzState::ExtraLen {
                n: 1,
                len: u16::from(b),
                flags,
            },
            GzState::ExtraLen { len, flags, .. } => {
                let left = len | u16::from(b) << 8;
                if left == 0 {
                    self.after_extra(flags)
                } else {
                    GzState::Extra { left, flags }
                }
            }
            GzState::Extra { left: 1, flags } => self.after_extra(flags),
            GzState::Extra { left, flags } => GzState::Extra {
                left: left - 1,
                flags,
            },
            GzState::Name { flags } if b == 0 => self.after_name(flags),
            GzState::Comment { flags } if b == 0 => self.after_comment(flags),
            s @ (GzState::Name { .. } | GzState::Comment { .. }) => s,
            GzState::HeaderCrc { n: 0, .. } => GzState::HeaderCrc {
                n: 1,
                crc: u16::from(b),
            },
            GzState::HeaderCrc { crc, .. } => {
                let want = (self.header_crc.sum() & 0xffff) as u16;
                if crc | u16::from(b) << 8 != want {
                    return Err(corrupt("header checksum mismatch"));
                }
                GzState::Body
            }
            GzState::Body => unreachable!("the body is inflated, not parsed"),
            GzState::Trailer { n, mut bytes } => {
                bytes[usize::from(n)] = b;
                if n < 7 {
                    GzState::Trailer { n: n + 1, bytes }
                } else {
                    let [c0, c1, c2, c3, l0, l1, l2, l3] = bytes;
                    if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.sum() {
                        return Err(corrupt("CRC-32 mismatch"));
                    }
                    // ISIZE is the length modulo 2^32.
                    if u32::from_le_bytes([l0, l1, l2, l3]) != self.crc.amount() {
                        return Err(corrupt("length mismatch"));
                    }
                    GzState::End
                }
            }
        };
        Ok(())
    }

    /// Byte `n` of the fixed header: magic, method, flags, then mtime/xfl/os (ignored).
    fn fixed(&mut self, n: u8, flags: u8, b: u8) -> Result<(), DecodeError> {
        let corrupt = |reason| DecodeError::Corrupt {
            coding: ContentCoding::Gzip,
            reason,
        };
        let flags = match n {
            0 if b != 0x1f => return Err(corrupt("bad magic")),
            1 if b != 0x8b => return Err(corrupt("bad magic")),
            2 if b != 8 => return Err(corrupt("compression method is not deflate")),
            3 if b & FRESERVED != 0 => return Err(corrupt("reserved header flags set")),
            3 => b,
            _ => flags,
        };
        self.state = if n < 9 {
            GzState::Fixed { n: n + 1, flags }
        } else if flags & FEXTRA != 0 {
            GzState::ExtraLen {
                n: 0,
                len: 0,
                flags,
            }
        } else {
            self.after_extra(flags)
        };
        Ok(())
    }

    fn after_extra(&self, flags: u8) -> GzState {
        if flags & FNAME != 0 {
            GzState::Name { flags }
        } else {
            self.after_name(flags)
        }
    }

    fn after_name(&self, flags: u8) -> GzState {
        if flags & FCOMMENT != 0 {
            GzState::Comment { flags }
        } else {
            self.after_comment(flags)
        }
    }

    fn after_comment(&self, flags: u8) -> GzState {
        if flags & FHCRC != 0 {
            GzState::HeaderCrc { n: 0, crc: 0 }
        } else {
            GzState::Body
        }
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.state {
            GzState::End => Ok(()),
            _ => Err(DecodeError::Truncated {
                coding: ContentCoding::Gzip,
            }),
        }
    }
}
