//! The member identity in headless Chromium: created once and kept across reloads, moved to
//! another browser profile by exporting and importing the identity file.
#![cfg(target_arch = "wasm32")]

use peerchat_client_wasm::identity_store::IdentityStore;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

async fn fresh_store(name: &str) -> IdentityStore {
    rexie::Rexie::delete(name).await.expect("delete");
    IdentityStore::open(name).await.expect("open")
}

#[wasm_bindgen_test]
async fn identity_is_created_once_and_kept_across_reloads() {
    let store = fresh_store("peerchat-identity-test-a").await;
    assert!(store.load().await.unwrap().is_none());
    let created = store.load_or_create().await.unwrap();
    let again = store.load_or_create().await.unwrap();
    assert_eq!(again.key.public_key(), created.key.public_key());
    let reopened = IdentityStore::open("peerchat-identity-test-a")
        .await
        .unwrap();
    assert_eq!(
        reopened.load().await.unwrap().unwrap().key.public_key(),
        created.key.public_key()
    );
    // Two fresh profiles do not end up with the same key.
    let other = fresh_store("peerchat-identity-test-b")
        .await
        .load_or_create()
        .await
        .unwrap();
    assert_ne!(other.key.public_key(), created.key.public_key());
}

#[wasm_bindgen_test]
async fn identity_moves_to_another_profile_by_export_and_import() {
    let home = fresh_store("peerchat-identity-test-home").await;
    let original = home.load_or_create().await.unwrap();
    let file = original.to_file();
    let laptop = fresh_store("peerchat-identity-test-laptop").await;
    laptop.load_or_create().await.unwrap();
    let imported = laptop.import(&file).await.unwrap();
    assert_eq!(imported.key.public_key(), original.key.public_key());
    assert_eq!(
        laptop.load().await.unwrap().unwrap().key.public_key(),
        original.key.public_key()
    );
    let refused = laptop.import("{\"not\":\"an identity\"}").await;
    assert!(refused.is_err());
    assert_eq!(
        laptop.load().await.unwrap().unwrap().key.public_key(),
        original.key.public_key(),
        "a bad file changes nothing"
    );
}
