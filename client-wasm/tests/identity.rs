//! The member identity in headless Chromium: created once and kept across reloads, moved to
//! another browser profile by exporting and importing the identity file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]
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

#[wasm_bindgen_test]
async fn relay_key_is_pinned_at_first_contact_and_a_change_is_an_error() {
    use peerchat_client_wasm::identity_store::{RelayKeyCheck, RelayKeyError};
    use peerchat_shared::identity::SecretKey;
    let store = fresh_store("peerchat-identity-test-pins").await;
    let relay = SecretKey::from_seed([1; 32]).public_key();
    let impostor = SecretKey::from_seed([2; 32]).public_key();
    let url = "https://chat.example.org";
    assert_eq!(
        store.check_relay_key(url, &relay).await,
        Ok(RelayKeyCheck::Pinned)
    );
    assert_eq!(
        store.check_relay_key(url, &relay).await,
        Ok(RelayKeyCheck::Known)
    );
    let changed = store.check_relay_key(url, &impostor).await;
    assert!(
        matches!(&changed, Err(RelayKeyError::Changed { pinned, offered, .. }) if *pinned == relay && *offered == impostor)
    );
    assert!(changed.unwrap_err().to_string().contains("posing"));
    assert_eq!(
        store.check_relay_key(url, &relay).await,
        Ok(RelayKeyCheck::Known),
        "the pin is unchanged"
    );
    assert_eq!(
        store
            .check_relay_key("https://other.example.org", &impostor)
            .await,
        Ok(RelayKeyCheck::Pinned)
    );
}

#[wasm_bindgen_test]
async fn identity_database_upgrades_from_version_1_keeping_the_identity() {
    use peerchat_shared::identity::SecretKey;
    use peerchat_shared::identity_export::Identity;
    let name = "peerchat-identity-test-upgrade";
    rexie::Rexie::delete(name).await.expect("delete");
    // A database as version 1 of the schema left it: the identity store only.
    let version_1 = rexie::Rexie::builder(name)
        .version(1)
        .add_object_store(rexie::ObjectStore::new("identity"))
        .build()
        .await
        .expect("open version 1");
    let identity = Identity {
        key: SecretKey::from_seed([7; 32]),
        display_name: None,
    };
    let transaction = version_1
        .transaction(&["identity"], rexie::TransactionMode::ReadWrite)
        .unwrap();
    let store = transaction.store("identity").unwrap();
    let record = wasm_bindgen::JsValue::from_str(&identity.to_file());
    store
        .put(&record, Some(&wasm_bindgen::JsValue::from_str("self")))
        .await
        .unwrap();
    transaction.done().await.unwrap();
    version_1.close();

    let upgraded = IdentityStore::open(name).await.expect("open version 2");
    let loaded = upgraded
        .load()
        .await
        .unwrap()
        .expect("the identity survived the upgrade");
    assert_eq!(loaded.key.public_key(), identity.key.public_key());
    let relay = SecretKey::from_seed([1; 32]).public_key();
    assert!(upgraded
        .check_relay_key("https://chat.example.org", &relay)
        .await
        .is_ok());
}
