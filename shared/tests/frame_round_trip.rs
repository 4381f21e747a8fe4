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

use peerchat_shared::codec::{decode_client_frame, decode_peer_frame, decode_relay_frame, encode};
use peerchat_shared::frames::{ClientToRelay, RelayToClient};
use peerchat_shared::peer::PeerToPeer;
use proptest::prelude::*;
use strategies::{client_frame, peer_frame, relay_frame};

fn type_field(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    value["type"].as_str().unwrap().to_owned()
}

proptest! {
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
