//! The ClientHello parser never panics, and a ClientHello it accepts lies within the
//! bytes it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = cork_inspect::peek_client_hello(data) {
        assert!(info.records_len <= data.len());
    }
});
