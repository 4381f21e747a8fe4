//! Fuzz target: decoding any bytes as a chunk frame never panics, and whatever decodes
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerchat_shared::transfer::ChunkFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = ChunkFrame::decode(data) {
        assert_eq!(frame.encode(), data);
    }
});
