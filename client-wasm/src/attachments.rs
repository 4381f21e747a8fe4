//! Attachments in the browser: an upload is hashed and stored chunk by chunk before its message
//! is sent (so this member serves it from the first request), in room the driver keeps for it;
//! a download's progress is followed for the page; and a complete file is put together from its
//! chunks, once its bytes' SHA-256 matches the `sha256` of the description it is opened by,
//! before the page may show or save it.

use crate::attachment_store::AttachmentRecord;
use crate::driver::Feed;
use crate::indexeddb::IndexedDbStore;
use futures_channel::{mpsc, oneshot};
use futures_util::SinkExt as _;
use peerchat_shared::chunk_tree::{chunk_count, verify_chunk, FileHasher, CHUNK_BYTES};
use peerchat_shared::identity::PublicKey;
use peerchat_shared::message::{
    attachment_name_from, media_type_from, Attachment, ImageInfo, Sha256Digest,
};
use peerchat_shared::transfer::AttachmentKey;
use std::collections::{BTreeSet, HashMap};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Bytes read from a file at once while uploading.
const READ_BYTES: usize = 32 * CHUNK_BYTES;

/// What the page measured of an image: its size, and its pixels drawn small (RGBA), from which
/// the preview is made.
#[derive(Debug)]
pub struct ImageSample {
    pub width: u32,
    pub height: u32,
    pub sample_width: u32,
    pub sample_height: u32,
    pub pixels: Vec<u8>,
}

impl ImageSample {
    /// Reads `{width, height, sample_width, sample_height, pixels}` (pixels: RGBA bytes).
    pub fn from_js(value: &JsValue) -> Option<Self> {
        let number = |name: &str| {
            js_sys::Reflect::get(value, &JsValue::from_str(name))
                .ok()?
                .as_f64()
                .filter(|n| (1.0..=f64::from(u32::MAX)).contains(n))
                .map(|n| n as u32)
        };
        let pixels = js_sys::Reflect::get(value, &JsValue::from_str("pixels")).ok()?;
        let sample = Self {
            width: number("width")?,
            height: number("height")?,
            sample_width: number("sample_width")?,
            sample_height: number("sample_height")?,
            pixels: js_sys::Uint8Array::new(&pixels).to_vec(),
        };
        let expected = 4 * sample.sample_width as usize * sample.sample_height as usize;
        (sample.pixels.len() == expected).then_some(sample)
    }
}

/// A BlurHash of the sample, with about as many components across as its shape suggests.
fn preview(sample: &ImageSample) -> Option<String> {
    let (w, h) = (sample.sample_width.max(1), sample.sample_height.max(1));
    let across = if w >= h { 4 } else { 3 };
    let down = if h > w { 4 } else { 3 };
    blurhash::encode(across, down, w, h, &sample.pixels).ok()
}

/// The RGBA pixels of `preview` drawn `width` × `height` (small: the page scales it up).
pub fn preview_pixels(preview: &str, width: u32, height: u32) -> Option<Vec<u8>> {
    blurhash::decode(preview, width, height, 1.0).ok()
}

fn js_error(error: JsValue) -> String {
    error
        .as_string()
        .or_else(|| {
            error
                .dyn_ref::<js_sys::Error>()
                .map(|error| String::from(error.message()))
        })
        .unwrap_or_else(|| "unknown error".into())
}

async fn read_slice(file: &web_sys::File, start: usize, end: usize) -> Result<Vec<u8>, String> {
    let slice = file
        .slice_with_f64_and_f64(start as f64, end as f64)
        .map_err(js_error)?;
    let buffer = JsFuture::from(slice.array_buffer())
        .await
        .map_err(js_error)?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// What [`prepare_upload`] reports as it goes.
pub struct UploadWatch {
    pub on_progress: js_sys::Function,
    pub signal: Option<web_sys::AbortSignal>,
}

impl UploadWatch {
    fn progress(&self, done: u64, total: u64) -> Result<(), String> {
        if self
            .signal
            .as_ref()
            .is_some_and(web_sys::AbortSignal::aborted)
        {
            return Err("cancelled".into());
        }
        // An exception in the page's handler is the page's to report.
        let _ = self.on_progress.call2(
            &JsValue::NULL,
            &JsValue::from_f64(done as f64),
            &JsValue::from_f64(total as f64),
        );
        Ok(())
    }
}

/// Hashes `file`, stores it chunk by chunk with the proofs as the member's own, in room the
/// driver takes for it, and returns its description for a message. Reads the file twice: once
/// for the tree, once to store each chunk with its proof (each checked against the tree, so a
/// file changed in between is refused); never all of it at once.
pub async fn prepare_upload(
    store: &IndexedDbStore,
    feed: &mpsc::Sender<Feed>,
    file: &web_sys::File,
    image: Option<ImageSample>,
    watch: &UploadWatch,
) -> Result<Attachment, String> {
    let size = file.size() as usize;
    let mut hasher = FileHasher::default();
    let mut at = 0;
    while at < size {
        let end = (at + READ_BYTES).min(size);
        hasher.update(&read_slice(file, at, end).await?);
        at = end;
        watch.progress(at as u64 / 2, size as u64)?;
    }
    let (hashed_size, sha256, tree) = hasher.finish();
    if hashed_size != size as u64 {
        return Err("the file changed while it was read".into());
    }
    let attachment = Attachment {
        name: attachment_name_from(&file.name()),
        media_type: media_type_from(&file.type_()),
        size: size as u64,
        sha256: Sha256Digest(sha256),
        root: Sha256Digest(tree.root()),
        image: image.as_ref().and_then(|sample| {
            Some(ImageInfo {
                width: sample.width,
                height: sample.height,
                preview: preview(sample)?,
            })
        }),
    };
    let key = AttachmentKey::of(&attachment);
    let mut record = AttachmentRecord::described(attachment.clone(), true);
    let (reply, room) = oneshot::channel();
    let reserve = Feed::ReserveUpload {
        record: record.clone(),
        reply,
    };
    let mut feed = feed.clone();
    feed.send(reserve)
        .await
        .map_err(|_| "the client has stopped".to_owned())?;
    room.await
        .map_err(|_| "the client has stopped".to_owned())??;
    let stored = store_upload(store, file, &tree, &mut record, watch).await;
    // The driver lets go of the room it kept (and deletes what was stored on failure).
    let done = Feed::UploadDone {
        key,
        stored: stored.is_ok(),
    };
    let _ = feed.send(done).await;
    stored.map(|()| attachment)
}

/// The second pass of [`prepare_upload`]: every chunk with its proof, then the record.
async fn store_upload(
    store: &IndexedDbStore,
    file: &web_sys::File,
    tree: &peerchat_shared::chunk_tree::ChunkTree,
    record: &mut AttachmentRecord,
    watch: &UploadWatch,
) -> Result<(), String> {
    let key = record.key();
    let size = key.size as usize;
    // Once through for an empty file too: it has one empty chunk.
    let (mut index, mut at) = (0, 0);
    loop {
        let end = (at + READ_BYTES).min(size);
        let bytes = read_slice(file, at, end).await?;
        let pieces: Vec<&[u8]> = chunks_of(&bytes).collect();
        let proofs: Vec<_> = (0..pieces.len())
            .map(|offset| tree.proof(index + offset))
            .collect();
        let chunks: Vec<_> = pieces
            .iter()
            .zip(&proofs)
            .enumerate()
            .map(|(offset, (data, proof))| ((index + offset) as u64, *data, proof.as_slice()))
            .collect();
        let unchanged = chunks
            .iter()
            .all(|(index, data, proof)| verify_chunk(&key.root, key.size, *index, data, proof));
        if !unchanged {
            return Err("the file changed while it was read".into());
        }
        store
            .put_chunks(&key, &chunks)
            .await
            .map_err(|error| error.to_string())?;
        index += chunks.len();
        at = end;
        watch.progress(size as u64 / 2 + at as u64 / 2, size as u64)?;
        if at >= size {
            break;
        }
    }
    record.complete = true;
    record.bytes_sha256 = Some(record.attachment.sha256);
    store
        .put_attachment(record)
        .await
        .map_err(|error| error.to_string())
}

/// The chunks of a piece of a file read at a chunk boundary (one empty chunk for nothing).
fn chunks_of(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let empty: &[u8] = &[];
    let first = bytes.is_empty().then_some(empty);
    first.into_iter().chain(bytes.chunks(CHUNK_BYTES))
}

/// A download the driver follows for the page.
#[derive(Debug)]
pub struct Download {
    pub record: AttachmentRecord,
    /// Started by the driver itself (a small file of a message delivered), not the member.
    pub automatic: bool,
    pub held: u64,
    pub senders: BTreeSet<PublicKey>,
    /// When the first chunk came (ms), and bytes since.
    pub started_at: Option<f64>,
    pub bytes: u64,
    /// When the page was last told (ms).
    pub reported_at: f64,
    /// `fetching`, or `unavailable` while nobody linked holds the missing chunks.
    pub state: &'static str,
}

impl Download {
    pub fn new(record: AttachmentRecord, automatic: bool) -> Self {
        Self {
            record,
            automatic,
            held: 0,
            senders: BTreeSet::new(),
            started_at: None,
            bytes: 0,
            reported_at: 0.0,
            state: "fetching",
        }
    }

    pub fn total(&self) -> u64 {
        chunk_count(self.record.attachment.size)
    }

    /// Bytes per second since the first chunk came.
    pub fn rate(&self, now: f64) -> f64 {
        match self.started_at {
            Some(start) if now > start => self.bytes as f64 * 1000.0 / (now - start),
            _ => 0.0,
        }
    }
}

/// The downloads in progress.
pub type Downloads = HashMap<AttachmentKey, Download>;
