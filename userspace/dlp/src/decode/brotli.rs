//! The `br` layer (RFC 7932) over the brotli crate's low-level stream decoder, which
//! writes into a buffer we size.

use brotli::{BrotliDecompressStream, BrotliResult, BrotliState, HeapAlloc, HuffmanCode};

use super::{ContentCoding, DecodeError, OUT_CHUNK, Sink};

type State = BrotliState<HeapAlloc<u8>, HeapAlloc<u32>, HeapAlloc<HuffmanCode>>;

pub(super) struct Brotli {
    state: Box<State>,
    buf: Vec<u8>,
    done: bool,
}

const CODING: ContentCoding = ContentCoding::Brotli;

impl Brotli {
    pub fn new() -> Brotli {
        let mut state = Box::new(BrotliState::new(
            HeapAlloc::new(0),
            HeapAlloc::new(0),
            HeapAlloc::new(HuffmanCode { bits: 0, value: 0 }),
        ));
        // "Large window" brotli is not RFC 7932 and may ask for a 1 GiB window; the
        // standard maximum is 16 MiB, which bounds this layer's memory.
        state.large_window = false;
        Brotli {
            state,
            buf: vec![0; OUT_CHUNK],
            done: false,
        }
    }

    pub fn push(&mut self, input: &[u8], out: &mut Sink<'_>) -> Result<(), DecodeError> {
        if self.done {
            return if input.is_empty() {
                Ok(())
            } else {
                Err(DecodeError::TrailingData { coding: CODING })
            };
        }
        let mut available_in = input.len();
        let mut input_offset = 0;
        loop {
            let mut available_out = self.buf.len();
            let mut output_offset = 0;
            let mut total_out = 0;
            let result = BrotliDecompressStream(
                &mut available_in,
                &mut input_offset,
                input,
                &mut available_out,
                &mut output_offset,
                &mut self.buf,
                &mut total_out,
                &mut self.state,
            );
            if output_offset > 0 {
                out(&self.buf[..output_offset])?;
            }
            match result {
                BrotliResult::NeedsMoreOutput => continue,
                BrotliResult::NeedsMoreInput => return Ok(()),
                BrotliResult::ResultSuccess => {
                    self.done = true;
                    return if available_in == 0 {
                        Ok(())
                    } else {
                        Err(DecodeError::TrailingData { coding: CODING })
                    };
                }
                BrotliResult::ResultFailure => {
                    return Err(DecodeError::Corrupt {
                        coding: CODING,
                        reason: "invalid brotli stream",
                    });
                }
            }
        }
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.done {
            Ok(())
        } else {
            Err(DecodeError::Truncated { coding: CODING })
        }
    }
}
