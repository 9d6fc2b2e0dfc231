//! A minimal RFC 6455 server: the handshake's accept key and a frame codec, enough to
//! echo messages and record what a client sent through cork's proxy.
//!
//! Client frames must be masked (RFC 6455 §5.1); server frames are not. Fragmented
//! messages are reassembled; pings are answered; a close is echoed and ends the session.

use std::io;

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The GUID the accept key is derived with (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest message reassembled; a larger one ends the session.
const MAX_MESSAGE: usize = 16 << 20;

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// Text message.
    pub const TEXT: u8 = 0x1;
    /// Binary message.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// One frame as read off the wire, payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// The opcode (low four bits of the first byte).
    pub opcode: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Reads one client frame; `None` at a clean EOF before the frame started.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 2];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let fin = head[0] & 0x80 != 0;
    if head[0] & 0x70 != 0 {
        return Err(invalid("reserved bits set (no extension was negotiated)"));
    }
    let opcode = head[0] & 0x0f;
    if head[1] & 0x80 == 0 {
        return Err(invalid("unmasked client frame"));
    }
    let len = match head[1] & 0x7f {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_MESSAGE)
        .ok_or_else(|| invalid("frame larger than the message limit"))?;
    if opcode >= 0x8 && (len > 125 || !fin) {
        return Err(invalid("control frame fragmented or longer than 125 bytes"));
    }
    let mut mask = [0u8; 4];
    r.read_exact(&mut mask).await?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

/// Writes one unmasked, final server frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    opcode: u8,
    payload: &[u8],
) -> io::Result<()> {
    let mut head = Vec::with_capacity(10);
    head.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => head.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            head.push(126);
            head.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            head.push(127);
            head.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    w.write_all(&head).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// A complete message received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsMessage {
    /// Text (opcode 1) rather than binary (opcode 2).
    pub text: bool,
    /// The reassembled payload.
    pub payload: Vec<u8>,
}

/// Echoes messages until the client closes or the connection fails; `on_message` sees
/// each complete message before it is echoed.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    mut on_message: impl FnMut(WsMessage),
) -> io::Result<()> {
    let mut partial: Option<WsMessage> = None;
    while let Some(f) = read_frame(io).await? {
        match f.opcode {
            opcode::PING => write_frame(io, opcode::PONG, &f.payload).await?,
            opcode::PONG => {}
            opcode::CLOSE => {
                // Echo the status code (the first two bytes) and finish (§5.5.1).
                let code = f.payload.get(..2).unwrap_or_default();
                write_frame(io, opcode::CLOSE, code).await?;
                return Ok(());
            }
            opcode::TEXT | opcode::BINARY | opcode::CONTINUATION => {
                let msg = match (f.opcode, partial.take()) {
                    (opcode::CONTINUATION, Some(mut m)) => {
                        if m.payload.len() + f.payload.len() > MAX_MESSAGE {
                            return Err(invalid("message larger than the limit"));
                        }
                        m.payload.extend_from_slice(&f.payload);
                        m
                    }
                    (opcode::CONTINUATION, None) => {
                        return Err(invalid("continuation without a message"));
                    }
                    (_, Some(_)) => return Err(invalid("new message inside a fragmented one")),
                    (op, None) => WsMessage {
                        text: op == opcode::TEXT,
                        payload: f.payload,
                    },
                };
                if !f.fin {
                    partial = Some(msg);
                    continue;
                }
                let op = if msg.text {
                    opcode::TEXT
                } else {
                    opcode::BINARY
                };
                let payload = msg.payload.clone();
                on_message(msg);
                write_frame(io, op, &payload).await?;
            }
            other => return Err(invalid(&format!("unknown opcode {other:#x}"))),
        }
    }
    Ok(())
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("websocket: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
