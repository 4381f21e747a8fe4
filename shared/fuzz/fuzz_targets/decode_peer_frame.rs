//! Fuzz target: decoding any bytes as a peer frame never panics, and whatever decodes
//! re-encodes to a frame that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerchat_shared::codec::{decode_peer_frame, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frame) = decode_peer_frame(text) {
        assert_eq!(decode_peer_frame(&encode(&frame)).as_ref(), Ok(&frame));
    }
});
