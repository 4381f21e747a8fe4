//! peerchat's protocol core: identities, signed objects, ids, the frame catalogue and its codec.
//!
//! This crate performs no IO, never reads a clock and never draws OS randomness: time and random
//! bits are arguments. It builds for native targets and for `wasm32-unknown-unknown`, so the relay,
//! the browser client and the virtual clients share one implementation of the wire format.
//! The one exception to "no IO" is the feature `key-file` (module `key_file`), for the native
//! programs that keep keys on disk; even there the seed of a new key is an argument.

pub mod budget;
pub mod channel;
pub mod chunk_tree;
pub mod client;
pub mod codec;
pub mod encoding;
pub mod frames;
pub mod identity;
pub mod identity_export;
pub mod ids;
#[cfg(feature = "key-file")]
pub mod key_file;
pub mod limits;
pub mod login;
pub mod membership;
pub mod mesh;
pub mod message;
pub mod node;
pub mod peer;
pub mod random;
pub mod signing;
pub mod store;
pub mod sync;
pub mod time;
pub mod transfer;

/// The protocol version spoken by this crate, sent in the first frame of each direction.
pub const PROTOCOL_VERSION: u32 = 1;

#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
