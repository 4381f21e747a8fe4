//! The IndexedDB history store in headless Chromium: the shared conformance suite, and history
//! that survives closing and reopening the database (a page reload).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]
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

#[wasm_bindgen_test]
async fn history_database_version_1_upgrades_to_version_2_keeping_its_envelopes() {
    let name = "peerchat-history-upgrade";
    IndexedDbStore::delete(name).await.expect("delete");
    // A database as version 1 of the schema left it: envelopes and their channel index only.
    let version_1 = rexie::Rexie::builder(name)
        .version(1)
        .add_object_store(
            rexie::ObjectStore::new("envelopes")
                .key_path("id")
                .add_index(rexie::Index::new_array("by_channel", ["channel", "id"])),
        )
        .build()
        .await
        .expect("open version 1");
    let envelopes = conformance::envelopes("general", 5_000, 3);
    let transaction = version_1
        .transaction(&["envelopes"], rexie::TransactionMode::ReadWrite)
        .unwrap();
    let store = transaction.store("envelopes").unwrap();
    for verified in &envelopes {
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        let record = serde::Serialize::serialize(verified.envelope(), &serializer).unwrap();
        store.put(&record, None).await.unwrap();
    }
    transaction.done().await.unwrap();
    version_1.close();

    let upgraded = IndexedDbStore::open(name).await.expect("open version 2");
    let general = ChannelName::new("general").unwrap();
    assert_eq!(upgraded.count(&general).await.unwrap(), 3);
    // The envelopes read back, and new ones go in beside them.
    let newest_first: Vec<_> = envelopes
        .iter()
        .rev()
        .map(|verified| verified.envelope().clone())
        .collect();
    assert_eq!(
        upgraded.page_before(&general, None, 10).await.unwrap(),
        newest_first
    );
    upgraded
        .insert(&conformance::envelopes("general", 6_000, 2))
        .await
        .unwrap();
    assert_eq!(
        upgraded
            .page_before(&general, None, 10)
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(upgraded.outbox().await.unwrap(), vec![]);
    assert_eq!(upgraded.certificate().await.unwrap(), None);
}

#[wasm_bindgen_test]
async fn outbox_certificate_channels_and_profiles_are_kept_across_reopening() {
    use peerchat_shared::client::OutboxEntry;
    use peerchat_shared::identity::SecretKey;
    use peerchat_shared::membership::{DisplayName, MembershipCertificate, Profile, Role};
    use peerchat_shared::message::{ClientNonce, MessageBody};
    use peerchat_shared::time::UnixMillis;

    let name = "peerchat-relay-records";
    IndexedDbStore::delete(name).await.expect("delete");
    let relay = SecretKey::from_seed([1; 32]);
    let member = SecretKey::from_seed([2; 32]);
    let general = ChannelName::new("general").unwrap();
    let entry = |nonce: u8| OutboxEntry {
        channel: general.clone(),
        nonce: ClientNonce([nonce; 16]),
        body: MessageBody::text(format!("unsent {nonce}")),
        queued_at: UnixMillis(u64::from(nonce)),
    };
    let certificate = MembershipCertificate::issue(
        &relay,
        member.public_key(),
        Role::Member,
        UnixMillis(1),
        UnixMillis(2),
    );
    let profile = |name: &str, at: u64| {
        Profile::sign(
            &member,
            &relay.public_key(),
            DisplayName::new(name).unwrap(),
            UnixMillis(at),
        )
    };

    let store = IndexedDbStore::open(name).await.expect("open");
    for nonce in [1, 2, 3] {
        store.outbox_put(&entry(nonce)).await.unwrap();
    }
    store.outbox_remove(&ClientNonce([2; 16])).await.unwrap();
    store.save_certificate(Some(&certificate)).await.unwrap();
    store
        .save_known_channels(std::slice::from_ref(&general))
        .await
        .unwrap();
    store.save_profile(&profile("Newer", 20)).await.unwrap();
    store.save_profile(&profile("Older", 10)).await.unwrap();
    store.close();

    let reopened = IndexedDbStore::open(name).await.expect("reopen");
    let mut outbox = reopened.outbox().await.unwrap();
    outbox.sort_by_key(|entry| entry.queued_at);
    assert_eq!(outbox, vec![entry(1), entry(3)]);
    assert_eq!(reopened.certificate().await.unwrap(), Some(certificate));
    assert_eq!(reopened.known_channels().await.unwrap(), vec![general]);
    assert_eq!(
        reopened.profiles().await.unwrap(),
        vec![profile("Newer", 20)]
    );
    reopened.save_certificate(None).await.unwrap();
    assert_eq!(reopened.certificate().await.unwrap(), None);
}
