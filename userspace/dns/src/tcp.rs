//! DNS over TCP framing (RFC 1035 §4.2.2: each message preceded by its 16-bit length),
//! read in short slices so a reader notices the proxy stopping.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("no complete DNS message before the deadline")]
    TimedOut,
    #[error("the DNS proxy is stopping")]
    Stopped,
    #[error("connection closed in the middle of a DNS message")]
    Truncated,
    #[error("reading a DNS message over TCP")]
    Read {
        #[source]
        source: io::Error,
    },
}

/// Reads one length-prefixed message; `Ok(None)` when the peer closed cleanly between
/// messages. The stream must have a short read timeout (the proxy uses
/// [`super::proxy::POLL_INTERVAL`]): `stop` and `deadline` are checked between reads.
pub fn read_frame(
    stream: &mut TcpStream,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 2];
    if !read_full(stream, &mut len, deadline, stop, true)? {
        return Ok(None);
    }
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_full(stream, &mut msg, deadline, stop, false)?;
    Ok(Some(msg))
}

/// Fills `buf`; returns false on a clean EOF before the first byte when `eof_ok`.
fn read_full(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    stop: &AtomicBool,
    eof_ok: bool,
) -> Result<bool, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        if stop.load(Ordering::Relaxed) {
            return Err(FrameError::Stopped);
        }
        if Instant::now() >= deadline {
            return Err(FrameError::TimedOut);
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 && eof_ok => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(source) => return Err(FrameError::Read { source }),
        }
    }
    Ok(true)
}

/// Writes `msg` with its length prefix in one write. A message over 65535 bytes cannot be
/// framed and is an `InvalidInput` error.
pub fn write_frame(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("DNS message of {} bytes is too long for TCP", msg.len()),
        )
    })?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out)
}
