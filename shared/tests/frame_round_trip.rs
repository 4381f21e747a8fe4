//! Property tests of the wire format: every frame survives encode -> decode unchanged, arbitrary
//! input never panics the decoder, and every frame's `type` is in its catalogue's list.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod strategies;

use peerchat_shared::chunk_tree::{chunk_count, chunk_len, CHUNK_BYTES};
use peerchat_shared::codec::{decode_client_frame, decode_peer_frame, decode_relay_frame, encode};
use peerchat_shared::frames::{ClientToRelay, RelayToClient};
use peerchat_shared::limits::MAX_ATTACHMENT_BYTES;
use peerchat_shared::peer::PeerToPeer;
use peerchat_shared::transfer::{AttachmentKey, ChunkFrame, ChunkFrameError, MAX_CHUNK_WANT};
use proptest::prelude::*;
use strategies::{client_frame, peer_frame, relay_frame};

fn type_field(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    value["type"].as_str().unwrap().to_owned()
}

/// Any chunk frame the protocol accepts: indices of chunks the size has, a chunk's exact length.
fn chunk_frame() -> impl Strategy<Value = ChunkFrame> {
    let key = (any::<[u8; 32]>(), 0..=MAX_ATTACHMENT_BYTES)
        .prop_map(|(root, size)| AttachmentKey { root, size });
    (key, 0..4u8, any::<prop::sample::Index>(), any::<u64>()).prop_flat_map(
        |(key, kind, first, seed)| {
            let count = chunk_count(key.size);
            let index = first.index(count as usize) as u64;
            let indices = prop::collection::vec(0..count, 1..=MAX_CHUNK_WANT);
            let proof = prop::collection::vec(any::<[u8; 32]>(), 0..=15);
            (
                Just(key),
                Just(kind),
                Just(index),
                indices,
                proof,
                Just(seed),
            )
                .prop_map(|(key, kind, index, chunks, proof, seed)| match kind {
                    0 => ChunkFrame::Want { key, chunks },
                    1 => ChunkFrame::Missing { key, chunks },
                    2 => ChunkFrame::Have { key },
                    _ => ChunkFrame::Chunk {
                        key,
                        index,
                        proof,
                        data: (0..chunk_len(key.size, index))
                            .map(|i| (i as u64 ^ seed) as u8)
                            .collect(),
                    },
                })
        },
    )
}

proptest! {
    #[test]
    fn every_chunk_frame_round_trips(frame in chunk_frame()) {
        prop_assert_eq!(ChunkFrame::decode(&frame.encode()), Ok(frame));
    }

    #[test]
    fn decoding_arbitrary_bytes_as_a_chunk_frame_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = ChunkFrame::decode(&bytes);
    }

    #[test]
    fn every_client_frame_round_trips(frame in client_frame()) {
        let json = encode(&frame);
        prop_assert_eq!(decode_client_frame(&json), Ok(frame.clone()));
        prop_assert_eq!(type_field(&json), frame.type_name());
        prop_assert!(ClientToRelay::TYPES.contains(&frame.type_name()));
    }

    #[test]
    fn every_relay_frame_round_trips(frame in relay_frame()) {
        let json = encode(&frame);
        prop_assert_eq!(decode_relay_frame(&json), Ok(frame.clone()));
        prop_assert_eq!(type_field(&json), frame.type_name());
        prop_assert!(RelayToClient::TYPES.contains(&frame.type_name()));
    }

    #[test]
    fn every_peer_frame_round_trips(frame in peer_frame()) {
        let json = encode(&frame);
        prop_assert_eq!(decode_peer_frame(&json), Ok(frame));
        prop_assert!(PeerToPeer::TYPES.contains(&type_field(&json).as_str()));
    }

    #[test]
    fn decoding_arbitrary_text_never_panics(text in "\\PC{0,200}|\\{.{0,200}") {
        let _ = decode_client_frame(&text);
        let _ = decode_relay_frame(&text);
        let _ = decode_peer_frame(&text);
    }

    #[test]
    fn decoding_a_mutated_valid_frame_never_panics(
        frame in client_frame(),
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
    ) {
        let mut chars: Vec<char> = encode(&frame).chars().collect();
        let index = position.index(chars.len());
        chars[index] = replacement;
        let _ = decode_client_frame(&chars.into_iter().collect::<String>());
    }
}

fn small_key() -> AttachmentKey {
    AttachmentKey {
        root: [7; 32],
        size: CHUNK_BYTES as u64 + 10,
    }
}

#[test]
fn chunk_frames_that_break_the_rules_are_refused_with_the_reason() {
    let key = small_key();
    let chunk = |index: u64, len: usize| ChunkFrame::Chunk {
        key,
        index,
        proof: vec![[1; 32]],
        data: vec![0; len],
    };
    let oversized = chunk(1, 11).encode();
    assert_eq!(
        ChunkFrame::decode(&oversized),
        Err(ChunkFrameError::WrongLength {
            index: 1,
            len: 11,
            expected: 10
        }),
        "a chunk longer than its place in the file"
    );
    let mut full_plus_one = chunk(0, CHUNK_BYTES).encode();
    full_plus_one.push(0);
    assert!(matches!(
        ChunkFrame::decode(&full_plus_one),
        Err(ChunkFrameError::WrongLength { .. })
    ));
    let beyond = ChunkFrame::Want {
        key,
        chunks: vec![2],
    };
    assert_eq!(
        ChunkFrame::decode(&beyond.encode()),
        Err(ChunkFrameError::NoSuchChunk { index: 2, count: 2 })
    );
    let greedy = ChunkFrame::Want {
        key,
        chunks: vec![0; MAX_CHUNK_WANT + 1],
    };
    assert_eq!(
        ChunkFrame::decode(&greedy.encode()),
        Err(ChunkFrameError::BadCount(17))
    );
    let huge = ChunkFrame::Want {
        key: AttachmentKey {
            root: [7; 32],
            size: 2 * MAX_ATTACHMENT_BYTES,
        },
        chunks: vec![0],
    };
    assert_eq!(
        ChunkFrame::decode(&huge.encode()),
        Err(ChunkFrameError::SizeOverLimit(2 * MAX_ATTACHMENT_BYTES))
    );
    let mut trailing = ChunkFrame::Missing {
        key,
        chunks: vec![1],
    }
    .encode();
    trailing.push(0);
    assert_eq!(
        ChunkFrame::decode(&trailing),
        Err(ChunkFrameError::LengthMismatch)
    );
    let mut unknown = beyond.encode();
    unknown[0] = 0x09;
    assert_eq!(
        ChunkFrame::decode(&unknown),
        Err(ChunkFrameError::UnknownKind(0x09))
    );
    assert_eq!(
        ChunkFrame::decode(&[0x01, 2, 3]),
        Err(ChunkFrameError::Truncated(3))
    );
}
