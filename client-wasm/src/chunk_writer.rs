//! Attachment chunks written to IndexedDB beside the driver: the driver hands over each verified
//! chunk and goes on receiving the next; chunks waiting together are written in one
//! transaction, and a finished download is checked only after its last chunk is written.

use crate::driver::Feed;
use crate::indexeddb::IndexedDbStore;
use futures_channel::mpsc;
use futures_util::{SinkExt as _, StreamExt as _};
use peerchat_shared::chunk_tree::{chunk_count, Hash};
use peerchat_shared::message::Sha256Digest;
use peerchat_shared::transfer::AttachmentKey;
use std::rc::Rc;

/// Chunks (32 KiB each) written in one transaction at most.
const CHUNKS_PER_TRANSACTION: usize = 64;

/// What [`write_chunks`] carries out, in order.
pub(crate) enum ChunkWork {
    /// A verified chunk of a download, with its proof.
    Store {
        key: AttachmentKey,
        index: u64,
        data: Vec<u8>,
        proof: Vec<Hash>,
    },
    /// Every chunk of `key` is handed over: tell the driver their SHA-256 ([`Feed::Checked`])
    /// once they are written, `sha256` when the driver took it as they came, or else as read
    /// back.
    Check {
        key: AttachmentKey,
        sha256: Option<Sha256Digest>,
    },
}

/// Writes chunks and checks downloads in order until the driver drops its sender. A write that
/// fails is reported as [`Feed::ChunkNotStored`].
pub(crate) async fn write_chunks(
    history: Rc<IndexedDbStore>,
    feed: mpsc::Sender<Feed>,
    mut work: mpsc::Receiver<ChunkWork>,
) {
    while let Some(first) = work.next().await {
        let mut waiting = vec![first];
        while waiting.len() < CHUNKS_PER_TRANSACTION {
            match work.try_recv() {
                Ok(more) => waiting.push(more),
                Err(_) => break,
            }
        }
        let mut stores = Vec::new();
        for item in waiting {
            match item {
                ChunkWork::Store {
                    key,
                    index,
                    data,
                    proof,
                } => stores.push((key, index, data, proof)),
                ChunkWork::Check { key, sha256 } => {
                    store_all(&history, &feed, std::mem::take(&mut stores)).await;
                    let sha256 = match sha256 {
                        Some(taken) if all_stored(&history, &key).await => Some(taken),
                        _ => history.bytes_sha256(&key).await.unwrap_or(None),
                    };
                    tell_driver(&feed, Feed::Checked { key, sha256 });
                }
            }
        }
        store_all(&history, &feed, stores).await;
    }
}

/// Whether every chunk of `key` is in the store (a write that failed left one out).
async fn all_stored(history: &IndexedDbStore, key: &AttachmentKey) -> bool {
    history
        .stored_chunk_count(key)
        .await
        .is_ok_and(|count| count == chunk_count(key.size))
}

/// Feeds the driver from a task of its own: the driver may be waiting for this writer, so the
/// writer never waits for the driver's queue.
fn tell_driver(feed: &mpsc::Sender<Feed>, result: Feed) {
    let mut feed = feed.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = feed.send(result).await;
    });
}

/// Writes `stores`, one transaction for each attachment's run of chunks.
async fn store_all(
    history: &IndexedDbStore,
    feed: &mpsc::Sender<Feed>,
    stores: Vec<(AttachmentKey, u64, Vec<u8>, Vec<Hash>)>,
) {
    let mut rest = stores.as_slice();
    while let Some((key, ..)) = rest.first() {
        let run = rest.iter().take_while(|(other, ..)| other == key).count();
        let (same, after) = rest.split_at(run);
        let chunks: Vec<(u64, &[u8], &[Hash])> = same
            .iter()
            .map(|(_, index, data, proof)| (*index, data.as_slice(), proof.as_slice()))
            .collect();
        if let Err(error) = history.put_chunks(key, &chunks).await {
            let failed = Feed::ChunkNotStored {
                key: *key,
                message: error.to_string(),
            };
            tell_driver(feed, failed);
        }
        rest = after;
    }
}
