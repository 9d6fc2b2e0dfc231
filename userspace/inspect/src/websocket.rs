//! Reading the WebSocket frames (RFC 6455 §5) the inspecting proxy relays, one direction
//! per [`FrameReader`], so that DLP sees each message's payload, unmasked, as one stream
//! across its fragments, while the proxy forwards the original bytes unchanged.
//!
//! The reader is fed arbitrary chunks and reports [`WsEvent`]s; every event carries the
//! wire bytes it covers (`raw`), and those concatenate back to exactly the bytes fed, so
//! the proxy can forward what it has scanned and no more. It is strict: the proxy strips
//! `Sec-WebSocket-Extensions`, so reserved bits and opcodes mean a peer speaking something
//! cork cannot read, and anything RFC 6455 says MUST NOT be sent is refused with a
//! [`WsError`] whose [`reason`](WsError::reason) is a stable string for audit events.

mod error;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use sha1::{Digest, Sha1};

pub use error::WsError;

/// RFC 6455 §1.3: appended to `Sec-WebSocket-Key` for `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Longest control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The longest frame header: 2 bytes, a 64-bit length, a 4-byte masking key.
const MAX_HEADER_LEN: usize = 14;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2): base64 of the
/// SHA-1 of the key (surrounding whitespace removed) followed by the GUID.
pub fn accept_key(client_key: &str) -> String {
    let mut h = Sha1::new();
    h.update(client_key.trim().as_bytes());
    h.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A frame opcode (RFC 6455 §5.2); reserved values are refused, not represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong: short, never fragmented, may come between a message's
    /// fragments.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Which peer sends the bytes a reader reads: clients must mask every frame, servers must
/// not (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// A frame header as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub opcode: Opcode,
    pub fin: bool,
    pub masked: bool,
    pub payload_len: u64,
}

/// What the reader found, in stream order. The `raw` fields of all events concatenate to
/// the bytes fed.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A complete frame header; `raw` is its 2 to 14 wire bytes.
    Frame { frame: Frame, raw: &'a [u8] },
    /// Payload bytes of the current frame: `data` unmasked, `raw` as on the wire.
    /// `message` is the opcode of the message the bytes belong to (`Text` or `Binary`,
    /// for continuation frames too) or, for a control frame, its own opcode.
    Payload {
        message: Opcode,
        data: &'a [u8],
        raw: &'a [u8],
    },
    /// The current frame's payload is complete; `message_end` when it was the last frame
    /// of a data message (the point to finish that message's DLP stream).
    FrameEnd { message_end: bool },
}

/// Reads one direction of a WebSocket connection.
#[derive(Debug)]
pub struct FrameReader {
    sender: Sender,
    max_message_len: u64,
    /// Header bytes of the next frame seen so far.
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    /// The frame whose payload is being read.
    current: Option<Current>,
    /// A data message is in progress: its opcode and payload bytes so far (announced).
    message: Option<(Opcode, u64)>,
    closed: bool,
    failed: Option<WsError>,
    /// Unmasked payload, reused between events.
    scratch: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    /// The opcode payload events report (the message's, for continuations).
    message: Opcode,
    fin: bool,
    control: bool,
    close: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes read so far (the masking key index) and still to come.
    done: u64,
    left: u64,
}

impl FrameReader {
    /// A reader for frames from `sender`; data messages longer than `max_message_len`
    /// (all fragments together) are refused as soon as a header announces it.
    pub fn new(sender: Sender, max_message_len: u64) -> FrameReader {
        FrameReader {
            sender,
            max_message_len,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            current: None,
            message: None,
            closed: false,
            failed: None,
            scratch: Vec::new(),
        }
    }

    /// Reads the next chunk, reporting events as they complete. On error, the events for
    /// the bytes before the offending frame have been reported; its header bytes have not.
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        on: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        while !chunk.is_empty() {
            let used = match self.current {
                Some(cur) => self.payload(cur, chunk, on),
                None => self
                    .header_bytes(chunk, on)
                    .inspect_err(|&e| self.failed = Some(e))?,
            };
            chunk = &chunk[used..];
        }
        Ok(())
    }

    /// Whether the bytes fed end at a frame boundary.
    pub fn at_frame_boundary(&self) -> bool {
        self.current.is_none() && self.header_len == 0
    }

    /// Takes header bytes from `chunk`; returns how many.
    fn header_bytes(
        &mut self,
        chunk: &[u8],
        on: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<usize, WsError> {
        if self.closed {
            return Err(WsError::AfterClose);
        }
        let mut used = 0;
        loop {
            // The first two bytes say how long the rest of the header is.
            let need = if self.header_len < 2 {
                2
            } else {
                self.check_start()?
            };
            if self.header_len == need {
                break;
            }
            let take = (need - self.header_len).min(chunk.len() - used);
            self.header[self.header_len..self.header_len + take]
                .copy_from_slice(&chunk[used..used + take]);
            self.header_len += take;
            used += take;
            if self.header_len < need {
                return Ok(used);
            }
        }
        let (frame, current) = self.check_header()?;
        let len = self.header_len;
        self.header_len = 0;
        on(WsEvent::Frame {
            frame,
            raw: &self.header[..len],
        });
        self.current = Some(current);
        if current.left == 0 {
            self.end_frame(current, on);
        }
        Ok(used)
    }

    /// Checks the first two header bytes (refusing early, before the rest arrives);
    /// returns the full header length.
    fn check_start(&self) -> Result<usize, WsError> {
        let [b0, b1, ..] = self.header;
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let opcode =
            Opcode::from_bits(b0 & 0x0f).ok_or(WsError::ReservedOpcode { opcode: b0 & 0x0f })?;
        let masked = b1 & 0x80 != 0;
        match (self.sender, masked) {
            (Sender::Client, false) => return Err(WsError::UnmaskedClientFrame),
            (Sender::Server, true) => return Err(WsError::MaskedServerFrame),
            _ => {}
        }
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if b0 & 0x80 == 0 {
                return Err(WsError::ControlFragmented);
            }
            if u64::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(WsError::ControlTooLong {
                    len: u64::from(len7),
                });
            }
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        Ok(2 + ext + if masked { 4 } else { 0 })
    }

    /// Checks a complete header against the connection's state.
    fn check_header(&mut self) -> Result<(Frame, Current), WsError> {
        let h = &self.header[..self.header_len];
        let fin = h[0] & 0x80 != 0;
        let masked = h[1] & 0x80 != 0;
        // `check_start` has refused reserved opcodes.
        let opcode = Opcode::from_bits(h[0] & 0x0f).ok_or(WsError::ReservedOpcode {
            opcode: h[0] & 0x0f,
        })?;
        let (payload_len, rest) = match h[1] & 0x7f {
            126 => {
                let n = u64::from(u16::from_be_bytes([h[2], h[3]]));
                if n < 126 {
                    return Err(WsError::NonMinimalLength);
                }
                (n, &h[4..])
            }
            127 => {
                let mut b = [0; 8];
                b.copy_from_slice(&h[2..10]);
                let n = u64::from_be_bytes(b);
                if n >> 63 != 0 {
                    return Err(WsError::LengthMsbSet);
                }
                if n <= 0xffff {
                    return Err(WsError::NonMinimalLength);
                }
                (n, &h[10..])
            }
            n => (u64::from(n), &h[2..]),
        };
        let mask = masked.then(|| [rest[0], rest[1], rest[2], rest[3]]);
        let message = if opcode.is_control() {
            if opcode == Opcode::Close && payload_len == 1 {
                return Err(WsError::BadClosePayload);
            }
            opcode
        } else {
            let (message, so_far) = match (opcode, self.message) {
                (Opcode::Continuation, None) => return Err(WsError::UnexpectedContinuation),
                (Opcode::Continuation, Some(m)) => m,
                (_, Some(_)) => return Err(WsError::ExpectedContinuation),
                (op, None) => (op, 0),
            };
            let total = so_far.saturating_add(payload_len);
            if total > self.max_message_len {
                return Err(WsError::MessageTooLarge {
                    max: self.max_message_len,
                });
            }
            self.message = (!fin).then_some((message, total));
            message
        };
        let frame = Frame {
            opcode,
            fin,
            masked,
            payload_len,
        };
        let current = Current {
            message,
            fin,
            control: opcode.is_control(),
            close: opcode == Opcode::Close,
            mask,
            done: 0,
            left: payload_len,
        };
        Ok((frame, current))
    }

    /// Reads payload bytes of `cur` from `chunk`; returns how many.
    fn payload(
        &mut self,
        mut cur: Current,
        chunk: &[u8],
        on: &mut dyn FnMut(WsEvent<'_>),
    ) -> usize {
        // Both fit: bounded by `chunk.len()`.
        let n = usize::try_from(cur.left).map_or(chunk.len(), |left| left.min(chunk.len()));
        let raw = &chunk[..n];
        let data = match cur.mask {
            None => raw,
            Some(key) => {
                self.scratch.clear();
                // The key index runs on across chunks (RFC 6455 §5.3).
                let offset = (cur.done % 4) as usize;
                self.scratch.extend(
                    raw.iter()
                        .zip(key.iter().cycle().skip(offset))
                        .map(|(b, k)| b ^ k),
                );
                &self.scratch
            }
        };
        on(WsEvent::Payload {
            message: cur.message,
            data,
            raw,
        });
        cur.done += n as u64;
        cur.left -= n as u64;
        self.current = Some(cur);
        if cur.left == 0 {
            self.end_frame(cur, on);
        }
        n
    }

    fn end_frame(&mut self, cur: Current, on: &mut dyn FnMut(WsEvent<'_>)) {
        self.current = None;
        self.closed |= cur.close;
        on(WsEvent::FrameEnd {
            message_end: !cur.control && cur.fin,
        });
    }
}
