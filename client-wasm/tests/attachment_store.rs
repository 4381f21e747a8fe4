//! Attachments in IndexedDB, in headless Chromium: chunks and their proofs read back as stored,
//! held chunks listed for resuming, records with the digest of their bytes, and the order in
//! which the storage limit drops files (the ledger itself is tested in `shared`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]
#![cfg(target_arch = "wasm32")]

use peerchat_client_wasm::attachment_store::{rank, AttachmentRecord};
use peerchat_client_wasm::indexeddb::IndexedDbStore;
use peerchat_shared::message::{Attachment, Sha256Digest};
use peerchat_shared::transfer::{AttachmentKey, Room};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const MIB: u64 = 1024 * 1024;

async fn fresh_store(name: &str) -> IndexedDbStore {
    IndexedDbStore::delete(name).await.unwrap();
    IndexedDbStore::open(name).await.unwrap()
}

fn record(n: u8, size: u64, own: bool, opened_at: u64) -> AttachmentRecord {
    AttachmentRecord {
        attachment: Attachment {
            name: format!("file {n}"),
            media_type: "application/octet-stream".into(),
            size,
            sha256: Sha256Digest([n; 32]),
            root: Sha256Digest([n; 32]),
            image: None,
        },
        own,
        opened_at,
        complete: true,
        bytes_sha256: None,
    }
}

async fn kept(store: &IndexedDbStore) -> Vec<String> {
    let mut names: Vec<String> = store
        .attachments()
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.attachment.name)
        .collect();
    names.sort();
    names
}

#[wasm_bindgen_test]
async fn chunks_read_back_with_their_proofs_and_the_held_ones_are_listed() {
    let store = fresh_store("peerchat-attachments-test-chunks").await;
    let key = AttachmentKey {
        root: [5; 32],
        size: 3 * 32 * 1024,
    };
    let data = vec![7u8; 32 * 1024];
    let proof = vec![[1u8; 32], [2u8; 32]];
    store
        .put_chunks(&key, &[(0, &data, &proof), (2, &data[..10], &[])])
        .await
        .unwrap();
    assert_eq!(store.held_chunks(&key).await.unwrap(), [0, 2]);
    assert_eq!(
        store.read_chunk(&key, 0).await.unwrap(),
        Some((data.clone(), proof))
    );
    assert_eq!(
        store.read_chunk(&key, 2).await.unwrap(),
        Some((data[..10].to_vec(), vec![]))
    );
    assert_eq!(store.read_chunk(&key, 1).await.unwrap(), None);
    let other = AttachmentKey {
        root: [5; 32],
        size: 5,
    };
    assert!(
        store.held_chunks(&other).await.unwrap().is_empty(),
        "the same root with another size is another attachment"
    );
    store.delete_attachment(&key).await.unwrap();
    assert!(store.held_chunks(&key).await.unwrap().is_empty());
}

#[wasm_bindgen_test]
async fn records_read_back_with_the_digest_of_their_bytes() {
    let store = fresh_store("peerchat-attachments-test-records").await;
    let mut kept_record = record(1, 3 * MIB, true, 100);
    kept_record.bytes_sha256 = Some(Sha256Digest([9; 32]));
    store.put_attachment(&kept_record).await.unwrap();
    let read = store.attachment(&kept_record.key()).await.unwrap().unwrap();
    assert_eq!(read.bytes_sha256, Some(Sha256Digest([9; 32])));
    assert_eq!(kept(&store).await, ["file 1"]);
    store.delete_attachment(&kept_record.key()).await.unwrap();
    assert!(kept(&store).await.is_empty());
}

#[wasm_bindgen_test]
fn the_storage_limit_drops_unfinished_fetches_then_others_least_recently_opened_then_own() {
    let mut room = Room::new(10 * MIB);
    let unfinished = AttachmentRecord {
        complete: false,
        ..record(1, 3 * MIB, false, 900)
    };
    let records = [
        record(2, 3 * MIB, true, 100),
        record(3, 2 * MIB, false, 300),
        record(4, 2 * MIB, false, 200),
        unfinished,
    ];
    for record in &records {
        room.insert(record.key(), rank(record), MIB);
    }
    let fetching = record(5, 9 * MIB, false, 1_000);
    room.pin(fetching.key(), rank(&fetching));
    let dropped = room.take(fetching.key(), 9 * MIB).unwrap();
    // The unfinished fetch (1), then others' files least recently opened first (4, then 3).
    let order: Vec<AttachmentKey> = [3, 2, 1].iter().map(|at| records[*at].key()).collect();
    assert_eq!(dropped, order);
    assert!(
        room.contains(&records[0].key()),
        "the member's own goes last"
    );
}
