//! The IndexedDB history store in headless Chromium: the shared conformance suite, and history
//! that survives closing and reopening the database (a page reload).
#![cfg(target_arch = "wasm32")]

use peerchat_client_wasm::indexeddb::IndexedDbStore;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::store::{conformance, HistoryStore};
use std::cell::Cell;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn indexeddb_store_passes_the_history_store_conformance_suite() {
    let next = Cell::new(0);
    conformance::run_all(|| {
        next.set(next.get() + 1);
        let name = format!("peerchat-conformance-{}", next.get());
        async move {
            IndexedDbStore::delete(&name).await.expect("delete");
            IndexedDbStore::open(&name).await.expect("open")
        }
    })
    .await;
}

#[wasm_bindgen_test]
async fn indexeddb_history_survives_reopening_the_database() {
    let name = "peerchat-reopen";
    IndexedDbStore::delete(name).await.expect("delete");
    let general = ChannelName::new("general").unwrap();
    let store = IndexedDbStore::open(name).await.expect("open");
    assert_eq!(
        store
            .insert(&conformance::envelopes("general", 1_000, 12))
            .await
            .unwrap(),
        12
    );
    store.close();
    let reopened = IndexedDbStore::open(name).await.expect("reopen");
    assert_eq!(reopened.count(&general).await.unwrap(), 12);
    let newest = reopened.page_before(&general, None, 1).await.unwrap();
    assert_eq!(
        newest[0].body,
        peerchat_shared::message::MessageBody::text("message 11 at 1000")
    );
}
