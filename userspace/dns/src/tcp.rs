//! DNS over TCP framing (RFC 1035 §4.2.2: each message preceded by its 16-bit length), on
//! tokio streams. Deadlines and stopping are the caller's: a read dropped half-way leaves
//! the stream unusable, and the callers close it then.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed in the middle of a DNS message")]
    Truncated,
    #[error("reading a DNS message over TCP")]
    Read {
        #[source]
        source: io::Error,
    },
}

/// Reads one length-prefixed message; `Ok(None)` when the peer closed cleanly between
/// messages.
pub async fn read_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 2];
    let mut filled = 0;
    while filled < len.len() {
        match stream.read(&mut len[filled..]).await {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(FrameError::Read { source }),
        }
    }
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg).await.map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Read { source }
        }
    })?;
    Ok(Some(msg))
}

/// Writes `msg` with its length prefix in one write. A message over 65535 bytes cannot be
/// framed and is an `InvalidInput` error.
pub async fn write_frame<W: AsyncWrite + Unpin>(stream: &mut W, msg: &[u8]) -> io::Result<()> {
    stream.write_all(&frame(msg)?).await
}

/// `msg` behind its length prefix.
pub fn frame(msg: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(msg.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("DNS message of {} bytes is too long for TCP", msg.len()),
        )
    })?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    Ok(out)
}
