//! Attachments in the relay's IndexedDB database: one record per attachment (its signed
//! description and what this browser did with it) and its chunks, each with its proof, so that
//! this member serves them to others as soon as they are stored. Files are put together from
//! the chunks when the member opens or saves one; no whole file is held anywhere else.
//!
//! Room: the attachments together take at most the member's storage limit (set in You; by
//! default half of what the browser grants the site, at most 4 GiB). The driver keeps the
//! ledger ([`peerchat_shared::transfer::Room`], ranked by [`rank`]) and deletes here what it
//! drops.

use crate::indexeddb::{failed, IndexedDbStore};
use crate::relay_records::META;
use peerchat_shared::chunk_tree::{chunk_count, Hash, CHUNK_BYTES};
use peerchat_shared::encoding::to_base64url;
use peerchat_shared::message::{Attachment, Sha256Digest};
use peerchat_shared::store::StoreError;
use peerchat_shared::transfer::{AttachmentKey, ChunkWithProof};
use rexie::{KeyRange, TransactionMode};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use wasm_bindgen::JsValue;

/// Attachment records, keyed by [`key_text`].
pub const ATTACHMENTS: &str = "attachments";
/// Chunks, keyed by `[key_text, index]`: the proof's hashes, then the data.
pub const CHUNKS: &str = "chunks";
/// The member's storage limit, in `meta`.
const STORAGE_LIMIT: &str = "attachment_storage_limit";
/// Chunks read at once while putting a file together or reading it through.
const ASSEMBLE_CHUNKS: u32 = 32;
/// The size up to which files are fetched as their messages arrive, in `meta`.
const AUTOMATIC_FETCH_LIMIT: &str = "attachment_automatic_fetch_limit";
/// The storage limit when the browser says nothing of its quota.
pub const DEFAULT_STORAGE_LIMIT: u64 = 1024 * 1024 * 1024;

/// What this browser keeps about one attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachmentRecord {
    /// The description from the signed message.
    pub attachment: Attachment,
    /// Posted from this browser: dropped last.
    pub own: bool,
    /// When the member last opened or saved it (ms), for dropping the least recently opened.
    pub opened_at: u64,
    /// Every chunk is stored.
    pub complete: bool,
    /// The SHA-256 of the bytes, once complete and read through. The chunk tree fixes the
    /// bytes, but a message may claim another `sha256` for them: each description is checked
    /// against this, so one that lies shows as not matching without touching the others.
    #[serde(default)]
    pub bytes_sha256: Option<Sha256Digest>,
}

impl AttachmentRecord {
    pub fn key(&self) -> AttachmentKey {
        AttachmentKey::of(&self.attachment)
    }

    /// A record of an attachment not stored yet, as a message describes it.
    pub fn described(attachment: Attachment, own: bool) -> Self {
        Self {
            attachment,
            own,
            opened_at: js_sys::Date::now() as u64,
            complete: false,
            bytes_sha256: None,
        }
    }

    /// The bytes stored under `key`, as far as the record says.
    pub fn stored_bytes(&self, held_chunks: u64) -> u64 {
        if self.complete {
            self.attachment.size
        } else {
            held_chunks
                .saturating_mul(CHUNK_BYTES as u64)
                .min(self.attachment.size)
        }
    }
}

/// Where an attachment stands in line to be dropped, the first first: fetches left unfinished
/// and not followed, then others' files least recently opened first, then the member's own.
pub type Rank = (u8, u64);

pub fn rank(record: &AttachmentRecord) -> Rank {
    let class = match (record.own, record.complete) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => 0,
    };
    (class, record.opened_at)
}

/// The text that names an attachment in the stores: its root (base64url), `:`, its size.
pub fn key_text(key: &AttachmentKey) -> String {
    format!("{}:{}", to_base64url(&key.root), key.size)
}

fn chunk_key(key: &str, index: u64) -> JsValue {
    // Indices are below 2^15: exact as JavaScript numbers.
    js_sys::Array::of2(&JsValue::from_str(key), &JsValue::from_f64(index as f64)).into()
}

fn all_chunks(key: &str) -> Result<KeyRange, StoreError> {
    KeyRange::bound(
        &chunk_key(key, 0),
        &chunk_key(key, u64::from(u32::MAX)),
        Some(false),
        Some(false),
    )
    .map_err(failed)
}

/// A chunk as stored: the number of proof hashes, the hashes, the data.
fn chunk_record(data: &[u8], proof: &[Hash]) -> JsValue {
    let mut bytes = Vec::with_capacity(1 + 32 * proof.len() + data.len());
    // A proof has at most 15 hashes.
    bytes.push(proof.len() as u8);
    for hash in proof {
        bytes.extend_from_slice(hash);
    }
    bytes.extend_from_slice(data);
    js_sys::Uint8Array::from(bytes.as_slice()).into()
}

fn from_chunk_record(record: &JsValue) -> Option<ChunkWithProof> {
    let bytes = js_sys::Uint8Array::new(record).to_vec();
    let (&hashes, rest) = bytes.split_first()?;
    let proof_len = 32 * usize::from(hashes);
    if rest.len() < proof_len {
        return None;
    }
    let (proof, data) = rest.split_at(proof_len);
    let proof = proof
        .chunks_exact(32)
        .filter_map(|hash| Hash::try_from(hash).ok())
        .collect();
    Some((data.to_vec(), proof))
}

impl IndexedDbStore {
    pub async fn attachment(
        &self,
        key: &AttachmentKey,
    ) -> Result<Option<AttachmentRecord>, StoreError> {
        self.get_json(ATTACHMENTS, &key_text(key)).await
    }

    pub async fn put_attachment(&self, record: &AttachmentRecord) -> Result<(), StoreError> {
        self.put_json(ATTACHMENTS, &key_text(&record.key()), record)
            .await
    }

    /// Every attachment record.
    pub async fn attachments(&self) -> Result<Vec<AttachmentRecord>, StoreError> {
        self.all_json(ATTACHMENTS).await
    }

    /// The indices of the chunks of `key` stored.
    pub async fn held_chunks(&self, key: &AttachmentKey) -> Result<Vec<u64>, StoreError> {
        let transaction = self
            .database
            .transaction(&[CHUNKS], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let store = transaction.store(CHUNKS).map_err(failed)?;
        let keys = store
            .get_all_keys(Some(all_chunks(&key_text(key))?), None)
            .await
            .map_err(failed)?;
        Ok(keys
            .iter()
            .filter_map(|key| js_sys::Array::from(key).get(1).as_f64())
            .map(|index| index as u64)
            .collect())
    }

    /// How many chunks of `key` are stored.
    pub async fn stored_chunk_count(&self, key: &AttachmentKey) -> Result<u64, StoreError> {
        let transaction = self
            .database
            .transaction(&[CHUNKS], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let store = transaction.store(CHUNKS).map_err(failed)?;
        let count = store
            .count(Some(all_chunks(&key_text(key))?))
            .await
            .map_err(failed)?;
        Ok(u64::from(count))
    }

    /// Stores chunks of `key` with their proofs, in one transaction.
    pub async fn put_chunks(
        &self,
        key: &AttachmentKey,
        chunks: &[(u64, &[u8], &[Hash])],
    ) -> Result<(), StoreError> {
        let key = key_text(key);
        let transaction = self
            .database
            .transaction(&[CHUNKS], TransactionMode::ReadWrite)
            .map_err(failed)?;
        let store = transaction.store(CHUNKS).map_err(failed)?;
        let records = chunks
            .iter()
            .map(|(index, data, proof)| (chunk_record(data, proof), Some(chunk_key(&key, *index))));
        store.put_all(records).await.map_err(failed)?;
        transaction.done().await.map_err(failed)?;
        Ok(())
    }

    /// Chunk `index` of `key` and its proof, when stored.
    pub async fn read_chunk(
        &self,
        key: &AttachmentKey,
        index: u64,
    ) -> Result<Option<ChunkWithProof>, StoreError> {
        let transaction = self
            .database
            .transaction(&[CHUNKS], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let store = transaction.store(CHUNKS).map_err(failed)?;
        let record = store
            .get(chunk_key(&key_text(key), index))
            .await
            .map_err(failed)?;
        Ok(record.as_ref().and_then(from_chunk_record))
    }

    /// The data of up to `count` chunks of `key` from `first` on, in order (chunks not stored
    /// are left out).
    pub async fn chunk_data(
        &self,
        key: &AttachmentKey,
        first: u64,
        count: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let records = self.chunk_records(key, first, count).await?;
        Ok(records
            .iter()
            .filter_map(from_chunk_record)
            .map(|(data, _)| data)
            .collect())
    }

    /// The same as [`Self::chunk_data`], as views of the records the store read (no copy into
    /// wasm memory).
    pub async fn chunk_views(
        &self,
        key: &AttachmentKey,
        first: u64,
        count: u32,
    ) -> Result<Vec<js_sys::Uint8Array>, StoreError> {
        let records = self.chunk_records(key, first, count).await?;
        Ok(records
            .iter()
            .map(|record| {
                let bytes = js_sys::Uint8Array::new(record);
                let data_start = 1 + 32 * u32::from(bytes.get_index(0));
                bytes.subarray(data_start.min(bytes.length()), bytes.length())
            })
            .collect())
    }

    async fn chunk_records(
        &self,
        key: &AttachmentKey,
        first: u64,
        count: u32,
    ) -> Result<Vec<JsValue>, StoreError> {
        let text = key_text(key);
        let range = KeyRange::bound(
            &chunk_key(&text, first),
            &chunk_key(&text, u64::from(u32::MAX)),
            Some(false),
            Some(false),
        )
        .map_err(failed)?;
        let transaction = self
            .database
            .transaction(&[CHUNKS], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let store = transaction.store(CHUNKS).map_err(failed)?;
        let records = store
            .get_all(Some(range), Some(count))
            .await
            .map_err(failed)?;
        Ok(records)
    }

    /// Puts the file `attachment` describes together from its chunks, as a `Blob` of its media
    /// type. `None` when a chunk is missing or the bytes are not the described file: their
    /// SHA-256 was taken when they were stored (the chunks were verified against the tree on
    /// the way in), and is read through here only for a record from before it was kept. The
    /// blob grows a batch of chunks at a time, so the page never holds the whole file
    /// (Chromium keeps a blob's bytes outside the page, on disk when they are large).
    pub async fn assemble(
        &self,
        attachment: &Attachment,
    ) -> Result<Option<web_sys::Blob>, StoreError> {
        let key = AttachmentKey::of(attachment);
        let Some(record) = self
            .attachment(&key)
            .await?
            .filter(|record| record.complete)
        else {
            return Ok(None);
        };
        let sha256 = match record.bytes_sha256 {
            Some(sha256) => Some(sha256),
            None => self.bytes_sha256(&key).await?,
        };
        let count = chunk_count(key.size);
        if sha256 != Some(attachment.sha256) || self.stored_chunk_count(&key).await? != count {
            return Ok(None);
        }
        let options = web_sys::BlobPropertyBag::new();
        options.set_type(&attachment.media_type);
        let blob_of = |parts: &js_sys::Array| {
            web_sys::Blob::new_with_blob_sequence_and_options(parts, &options)
                .map_err(|error| failed(format!("{error:?}")))
        };
        let mut blob = blob_of(&js_sys::Array::new())?;
        let mut next = 0;
        while next < count {
            let views = self.chunk_views(&key, next, ASSEMBLE_CHUNKS).await?;
            let expected = (count - next).min(u64::from(ASSEMBLE_CHUNKS));
            if views.len() as u64 != expected {
                // Dropped (for room) meanwhile.
                return Ok(None);
            }
            let parts = js_sys::Array::of1(&blob);
            for view in &views {
                parts.push(view);
            }
            blob = blob_of(&parts)?;
            next += expected;
        }
        Ok(Some(blob))
    }

    /// The SHA-256 of the bytes stored under `key`, read through in order; `None` when a chunk
    /// is missing.
    pub async fn bytes_sha256(
        &self,
        key: &AttachmentKey,
    ) -> Result<Option<Sha256Digest>, StoreError> {
        let count = chunk_count(key.size);
        let mut hasher = Sha256::new();
        let mut next = 0;
        while next < count {
            let chunks = self.chunk_data(key, next, ASSEMBLE_CHUNKS).await?;
            let expected = (count - next).min(u64::from(ASSEMBLE_CHUNKS));
            if chunks.len() as u64 != expected {
                // A chunk is missing (the ones after it would take its place in the run).
                return Ok(None);
            }
            for data in &chunks {
                hasher.update(data);
            }
            next += expected;
        }
        Ok(Some(Sha256Digest(hasher.finalize().into())))
    }

    /// Drops attachment `key` and its chunks.
    pub async fn delete_attachment(&self, key: &AttachmentKey) -> Result<(), StoreError> {
        let text = key_text(key);
        let transaction = self
            .database
            .transaction(&[ATTACHMENTS, CHUNKS], TransactionMode::ReadWrite)
            .map_err(failed)?;
        let chunks = transaction.store(CHUNKS).map_err(failed)?;
        chunks
            .delete(all_chunks(&text)?.into())
            .await
            .map_err(failed)?;
        let records = transaction.store(ATTACHMENTS).map_err(failed)?;
        records
            .delete(JsValue::from_str(&text))
            .await
            .map_err(failed)?;
        transaction.done().await.map_err(failed)?;
        Ok(())
    }

    pub async fn storage_limit(&self) -> Result<Option<u64>, StoreError> {
        self.get_json(META, STORAGE_LIMIT).await
    }

    pub async fn save_storage_limit(&self, bytes: u64) -> Result<(), StoreError> {
        self.put_json(META, STORAGE_LIMIT, &bytes).await
    }

    pub async fn automatic_fetch_limit(&self) -> Result<Option<u64>, StoreError> {
        self.get_json(META, AUTOMATIC_FETCH_LIMIT).await
    }

    pub async fn save_automatic_fetch_limit(&self, bytes: u64) -> Result<(), StoreError> {
        self.put_json(META, AUTOMATIC_FETCH_LIMIT, &bytes).await
    }
}
