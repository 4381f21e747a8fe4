//! The SHA-256 of downloads whose chunks arrive in any order, taken as they arrive: each
//! download's run of chunks from the first is hashed as it grows, and chunks that come early
//! wait within a byte budget shared by all downloads. A download that outgrows it (or that began
//! with chunks already stored) gets no digest here, and its bytes must be read back instead.

use crate::chunk_tree::chunk_count;
use crate::message::Sha256Digest;
use crate::transfer::AttachmentKey;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Bytes of early chunks held for all downloads together: 128 chunks, what four peers' windows
/// deliver ahead of a slow one.
const EARLY_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The digests being taken, one per download that began with no chunk stored.
#[derive(Debug, Default)]
pub struct OrderedDigests {
    downloads: HashMap<AttachmentKey, Running>,
    early_bytes: usize,
}

/// One download's digest of chunks `0..next`, and the chunks after `next` that came early.
#[derive(Debug, Default)]
struct Running {
    hasher: Sha256,
    next: u64,
    early: BTreeMap<u64, Vec<u8>>,
}

impl Running {
    fn early_bytes(&self) -> usize {
        self.early.values().map(Vec::len).sum()
    }
}

impl OrderedDigests {
    /// Starts taking the digest of `key`, whose chunks are all yet to come.
    pub fn begin(&mut self, key: AttachmentKey) {
        self.forget(&key);
        self.downloads.insert(key, Running::default());
    }

    /// Takes in verified chunk `index` of `key` (ignored unless [`Self::begin`] was called).
    /// A chunk seen before changes nothing: a verified chunk's bytes are the tree's.
    pub fn add(&mut self, key: &AttachmentKey, index: u64, data: &[u8]) {
        let Some(running) = self.downloads.get_mut(key) else {
            return;
        };
        if index < running.next || running.early.contains_key(&index) {
            return;
        }
        if index > running.next {
            if self.early_bytes + data.len() > EARLY_CHUNK_BYTES {
                return self.forget(key);
            }
            self.early_bytes += data.len();
            running.early.insert(index, data.to_vec());
            return;
        }
        running.hasher.update(data);
        running.next += 1;
        while let Some(data) = running.early.remove(&running.next) {
            self.early_bytes -= data.len();
            running.hasher.update(&data);
            running.next += 1;
        }
    }

    /// The digest of `key`'s bytes once every chunk was taken in; `None` when it must be
    /// read back. Either way `key` is forgotten.
    pub fn finish(&mut self, key: &AttachmentKey) -> Option<Sha256Digest> {
        let running = self.remove(key)?;
        (running.next == chunk_count(key.size) && running.early.is_empty())
            .then(|| Sha256Digest(running.hasher.finalize().into()))
    }

    /// Stops taking the digest of `key` (a download cancelled or failed).
    pub fn forget(&mut self, key: &AttachmentKey) {
        self.remove(key);
    }

    fn remove(&mut self, key: &AttachmentKey) -> Option<Running> {
        let running = self.downloads.remove(key)?;
        self.early_bytes -= running.early_bytes();
        Some(running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_tree::CHUNK_BYTES;
    use proptest::prelude::*;

    fn file(chunks: usize) -> Vec<u8> {
        (0..chunks * CHUNK_BYTES - 100)
            .map(|index| (index % 251) as u8)
            .collect()
    }

    /// The digests do not look at the root: only the size says how many chunks there are.
    fn key_of(bytes: &[u8]) -> AttachmentKey {
        AttachmentKey {
            root: [bytes.len() as u8; 32],
            size: bytes.len() as u64,
        }
    }

    fn sha256(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    proptest! {
        #[test]
        fn chunks_in_any_order_give_the_digest_of_the_file(
            order in Just((0..12u64).collect::<Vec<_>>()).prop_shuffle(),
            repeats in proptest::collection::vec(0..12u64, 0..4),
        ) {
            let bytes = file(12);
            let key = key_of(&bytes);
            let mut digests = OrderedDigests::default();
            digests.begin(key);
            for index in order.iter().chain(&repeats) {
                let start = *index as usize * CHUNK_BYTES;
                let end = (start + CHUNK_BYTES).min(bytes.len());
                digests.add(&key, *index, &bytes[start..end]);
            }
            prop_assert_eq!(digests.finish(&key), Some(sha256(&bytes)));
            prop_assert_eq!(digests.early_bytes, 0);
        }
    }

    #[test]
    fn a_download_missing_a_chunk_gets_no_digest() {
        let bytes = file(3);
        let key = key_of(&bytes);
        let mut digests = OrderedDigests::default();
        digests.begin(key);
        digests.add(&key, 0, &bytes[..CHUNK_BYTES]);
        digests.add(&key, 2, &bytes[2 * CHUNK_BYTES..]);
        assert_eq!(digests.finish(&key), None);
        assert_eq!(digests.early_bytes, 0, "what waited is let go");
    }

    #[test]
    fn a_download_not_begun_here_gets_no_digest() {
        let bytes = file(1);
        let key = key_of(&bytes);
        let mut digests = OrderedDigests::default();
        digests.add(&key, 0, &bytes);
        assert_eq!(digests.finish(&key), None);
    }

    #[test]
    fn early_chunks_beyond_the_budget_give_up_that_download_only() {
        let chunks = EARLY_CHUNK_BYTES / CHUNK_BYTES + 2;
        let large = file(chunks);
        let small = file(2);
        let (large_key, small_key) = (key_of(&large), key_of(&small));
        let mut digests = OrderedDigests::default();
        digests.begin(large_key);
        digests.begin(small_key);
        digests.add(&small_key, 1, &small[CHUNK_BYTES..]);
        // Every chunk but the first comes before it.
        for index in 1..chunks {
            let start = index * CHUNK_BYTES;
            let end = (start + CHUNK_BYTES).min(large.len());
            digests.add(&large_key, index as u64, &large[start..end]);
        }
        digests.add(&large_key, 0, &large[..CHUNK_BYTES]);
        assert_eq!(digests.finish(&large_key), None, "read back instead");
        digests.add(&small_key, 0, &small[..CHUNK_BYTES]);
        assert_eq!(digests.finish(&small_key), Some(sha256(&small)));
        assert_eq!(digests.early_bytes, 0);
    }

    #[test]
    fn beginning_again_starts_over() {
        let bytes = file(2);
        let key = key_of(&bytes);
        let mut digests = OrderedDigests::default();
        digests.begin(key);
        digests.add(&key, 1, &bytes[CHUNK_BYTES..]);
        digests.begin(key);
        assert_eq!(digests.early_bytes, 0);
        digests.add(&key, 0, &bytes[..CHUNK_BYTES]);
        digests.add(&key, 1, &bytes[CHUNK_BYTES..]);
        assert_eq!(digests.finish(&key), Some(sha256(&bytes)));
    }
}
