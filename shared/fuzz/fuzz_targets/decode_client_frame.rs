//! Fuzz target: decoding any bytes as a client frame never panics, and whatever decodes
//! re-encodes to a frame that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerchat_shared::codec::{decode_client_frame, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frame) = decode_client_frame(text) {
        assert_eq!(decode_client_frame(&encode(&frame)).as_ref(), Ok(&frame));
    }
});
