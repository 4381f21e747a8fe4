//! Attachments in IndexedDB, in headless Chromium: chunks and their proofs read back as stored,
//! held chunks listed for resuming, and the storage limit: the least recently opened files of
//! others go first, the member's own uploads last, a file being fetched never, and a file that
//! cannot fit is refused with how much room is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]
#![cfg(target_arch = "wasm32")]

use peerchat_client_wasm::attachment_store::{AttachmentRecord, RoomError};
use peerchat_client_wasm::indexeddb::IndexedDbStore;
use peerchat_shared::message::{Attachment, Sha256Digest};
use peerchat_shared::transfer::AttachmentKey;
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
        verified: Some(true),
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
async fn the_storage_limit_drops_others_least_recently_opened_files_first_and_own_uploads_last() {
    let store = fresh_store("peerchat-attachments-test-room").await;
    let limit = 10 * MIB;
    for record in [
        record(1, 3 * MIB, true, 100),
        record(2, 3 * MIB, false, 300),
        record(3, 3 * MIB, false, 200),
    ] {
        store.make_room(&record, limit, &[]).await.unwrap();
    }
    let chunk = vec![0u8; 16];
    store
        .put_chunks(&record(3, 0, false, 0).key(), &[(0, &chunk, &[])])
        .await
        .unwrap();
    // 4 MiB more: one 3 MiB file goes, the least recently opened of others' (3).
    let dropped = store
        .make_room(&record(4, 4 * MIB, false, 400), limit, &[])
        .await
        .unwrap();
    assert_eq!(dropped, [record(3, 3 * MIB, false, 0).key()]);
    assert_eq!(kept(&store).await, ["file 1", "file 2", "file 4"]);
    assert!(
        store
            .held_chunks(&record(3, 3 * MIB, false, 0).key())
            .await
            .unwrap()
            .is_empty(),
        "its chunks went with it"
    );
    // 6 MiB more, keeping 4 (being fetched): 2 goes, then the member's own 1.
    let dropped = store
        .make_room(
            &record(5, 6 * MIB, false, 500),
            limit,
            &[record(4, 4 * MIB, false, 0).key()],
        )
        .await
        .unwrap();
    assert_eq!(
        dropped,
        [
            record(2, 3 * MIB, false, 0).key(),
            record(1, 3 * MIB, true, 0).key()
        ]
    );
    assert_eq!(kept(&store).await, ["file 4", "file 5"]);
    // A file larger than what can be freed is refused, and nothing is dropped for it.
    let refused = store
        .make_room(&record(6, 11 * MIB, false, 600), limit, &[])
        .await;
    assert!(matches!(refused, Err(RoomError::Full { needed, .. }) if needed == 11 * MIB));
    assert_eq!(kept(&store).await, ["file 4", "file 5"]);
}
