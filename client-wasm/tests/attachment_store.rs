//! Attachments in IndexedDB, in headless Chromium: chunks and their proofs read back as stored,
//! held chunks listed for resuming, records with the digest of their bytes, files put together
//! only whole and as described, and the order in which the storage limit drops files (the
//! ledger itself is tested in `shared`).
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
use sha2::{Digest as _, Sha256};
use wasm_bindgen_futures::JsFuture;
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

/// The bytes of `blob`.
async fn blob_bytes(blob: &web_sys::Blob) -> Vec<u8> {
    let buffer = JsFuture::from(blob.array_buffer()).await.unwrap();
    js_sys::Uint8Array::new(&buffer).to_vec()
}

#[wasm_bindgen_test]
async fn a_file_is_put_together_only_whole_and_as_described() {
    let store = fresh_store("peerchat-attachments-test-assemble").await;
    // 40 chunks: more than one batch of the assembly.
    let bytes: Vec<u8> = (0..40 * 32 * 1024 - 7).map(|n| (n % 241) as u8).collect();
    let sha256 = Sha256Digest(Sha256::digest(&bytes).into());
    let mut kept = record(4, bytes.len() as u64, false, 1);
    kept.attachment.sha256 = sha256;
    let key = kept.key();
    for (index, chunk) in bytes.chunks(32 * 1024).enumerate() {
        store
            .put_chunks(&key, &[(index as u64, chunk, &[[3; 32]])])
            .await
            .unwrap();
    }
    store.put_attachment(&kept).await.unwrap();
    // A record from before the digest was kept: read through.
    assert_eq!(store.bytes_sha256(&key).await.unwrap(), Some(sha256));
    let blob = store.assemble(&kept.attachment).await.unwrap().unwrap();
    assert_eq!(blob_bytes(&blob).await, bytes);
    assert_eq!(blob.type_(), "application/octet-stream");

    let mut other_description = kept.attachment.clone();
    other_description.sha256 = Sha256Digest([1; 32]);
    assert!(store.assemble(&other_description).await.unwrap().is_none());

    kept.bytes_sha256 = Some(Sha256Digest([2; 32]));
    store.put_attachment(&kept).await.unwrap();
    assert!(
        store.assemble(&kept.attachment).await.unwrap().is_none(),
        "the digest kept when stored decides"
    );
    kept.bytes_sha256 = Some(sha256);
    store.put_attachment(&kept).await.unwrap();
    assert!(store.assemble(&kept.attachment).await.unwrap().is_some());

    // The same file under another root, with chunk 33 never stored: the chunks after it must
    // not take its place.
    let mut gapped = kept.clone();
    gapped.attachment.root = Sha256Digest([8; 32]);
    let gapped_key = gapped.key();
    for (index, chunk) in bytes
        .chunks(32 * 1024)
        .enumerate()
        .filter(|(index, _)| *index != 33)
    {
        store
            .put_chunks(&gapped_key, &[(index as u64, chunk, &[])])
            .await
            .unwrap();
    }
    store.put_attachment(&gapped).await.unwrap();
    assert!(store.assemble(&gapped.attachment).await.unwrap().is_none());
    assert_eq!(store.bytes_sha256(&gapped_key).await.unwrap(), None);
}
