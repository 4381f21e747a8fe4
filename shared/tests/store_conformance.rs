//! The history-store conformance suite against the in-memory store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use peerchat_shared::store::{conformance, MemoryStore};

#[test]
fn memory_store_passes_the_history_store_conformance_suite() {
    futures_executor::block_on(conformance::run_all(|| async { MemoryStore::default() }));
}
