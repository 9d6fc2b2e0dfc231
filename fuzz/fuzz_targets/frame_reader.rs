//! The WebSocket frame reader never panics, hands back exactly the bytes it consumed, and
//! reads the same frames and payload however the stream is chunked. The first byte picks
//! the sender and the chunk size; the rest is the stream.
#![no_main]

use cork_inspect::websocket::{FrameReader, Sender, WsError, WsEvent};
use libfuzzer_sys::fuzz_target;

/// Frame headers and end marks, payload (unmasked), raw bytes, and the error if any.
type Read = (Vec<String>, Vec<u8>, Vec<u8>, Option<WsError>);

fn read(sender: Sender, stream: &[u8], size: usize) -> Read {
    let mut r = FrameReader::new(sender, 1 << 16);
    let (mut marks, mut data, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in stream.chunks(size.max(1)) {
        let result = r.feed(chunk, &mut |e| match e {
            WsEvent::Frame { frame, raw: r } => {
                marks.push(format!("{frame:?}"));
                raw.extend_from_slice(r);
            }
            WsEvent::Payload {
                data: d, raw: r, ..
            } => {
                assert_eq!(d.len(), r.len());
                data.extend_from_slice(d);
                raw.extend_from_slice(r);
            }
            WsEvent::FrameEnd { message_end } => marks.push(format!("end {message_end}")),
        });
        if let Err(e) = result {
            return (marks, data, raw, Some(e));
        }
    }
    (marks, data, raw, None)
}

fuzz_target!(|data: &[u8]| {
    let [pick, stream @ ..] = data else {
        return;
    };
    let sender = if pick & 1 == 0 {
        Sender::Client
    } else {
        Sender::Server
    };
    let size = usize::from(pick >> 1) + 1;
    let whole = read(sender, stream, stream.len());
    let split = read(sender, stream, size);
    assert!(stream.starts_with(&whole.2));
    assert_eq!(whole, split);
});
