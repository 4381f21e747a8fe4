//! A virtual client's cache of attachments: the chunks (with their proofs) of the attachments
//! posted in its window, at most [`AttachmentLimits::max_bytes`] in all, the oldest (by
//! attachment id, the relay's stamp) evicted first. This is what keeps a photo available after
//! its sender closed the tab. With a data directory the chunks live in a redb file (only the
//! index is in memory) and survive a restart; without one they are in memory.
//!
//! Room is taken chunk by chunk as verified chunks arrive, never for the size a description
//! claims: a made-up description nobody can serve evicts nothing. At most
//! [`MAX_INCOMPLETE`] attachments are admitted unfinished at once, and one that gains no chunk
//! for [`STALLED_MILLIS`] is dropped ([`AttachmentCache::drop_stalled`]).
//!
//! Chunks are stored only after the transfer engine checked them against the signed root, and
//! every receiver checks them again, so the file is trusted as the operator's own disk is.

use peerchat_shared::chunk_tree::{chunk_count, chunk_len, Hash};
use peerchat_shared::ids::AttachmentId;
use peerchat_shared::time::UnixMillis;
use peerchat_shared::transfer::{AttachmentKey, ChunkWithProof};
use redb::{Database, ReadableTable as _, TableDefinition};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Chunks by (root, size, index): the proof's hashes, then the data.
const CHUNKS: TableDefinition<'_, (&[u8], u64, u64), &[u8]> = TableDefinition::new("chunks");
/// The attachments kept, by (root, size): their id's 16 bytes.
const ATTACHMENTS: TableDefinition<'_, (&[u8], u64), u128> = TableDefinition::new("attachments");

/// Attachments admitted and not yet complete, at most.
pub const MAX_INCOMPLETE: usize = 32;
/// An incomplete attachment that gains no chunk for this long is dropped (10 minutes).
pub const STALLED_MILLIS: u64 = 10 * 60 * 1000;

/// redb's page cache for the attachment file: chunks are written once and read now and then,
/// so little is gained by more (redb's own default is 1 GiB).
const PAGE_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// How much a virtual client keeps of attachments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// Attachment bytes kept in all; an attachment larger than this is not kept at all.
    pub max_bytes: u64,
}

impl Default for AttachmentLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AttachmentCacheError {
    #[error("attachment file: {0}")]
    Disk(String),
}

fn disk_error(error: impl std::fmt::Display) -> AttachmentCacheError {
    AttachmentCacheError::Disk(error.to_string())
}

/// One attachment kept or being fetched.
#[derive(Debug)]
struct Entry {
    held: BTreeSet<u64>,
    held_bytes: u64,
    /// When it was admitted or last gained a chunk.
    progress_at: UnixMillis,
}

impl Entry {
    fn is_complete(&self, key: &AttachmentKey) -> bool {
        self.held.len() as u64 == chunk_count(key.size)
    }
}

/// What [`AttachmentCache::put_chunk`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct PutChunk {
    /// The chunk is kept (false: its attachment is not admitted, or was the oldest and did not
    /// fit).
    pub kept: bool,
    /// The attachments evicted to make room (their fetches are to be cancelled).
    pub evicted: Vec<AttachmentKey>,
}

/// See the module documentation.
pub struct AttachmentCache {
    limits: AttachmentLimits,
    /// Each attachment kept (or being fetched), with the chunks held.
    entries: BTreeMap<AttachmentKey, Entry>,
    /// Oldest first.
    by_age: BTreeSet<(AttachmentId, AttachmentKey)>,
    /// The bytes of the chunks held.
    bytes: u64,
    memory: HashMap<(AttachmentKey, u64), ChunkWithProof>,
    disk: Option<Database>,
}

impl std::fmt::Debug for AttachmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentCache")
            .field("attachments", &self.entries.len())
            .field("bytes", &self.bytes)
            .field("persistent", &self.disk.is_some())
            .finish()
    }
}

impl AttachmentCache {
    pub fn in_memory(limits: AttachmentLimits) -> Self {
        Self {
            limits,
            entries: BTreeMap::new(),
            by_age: BTreeSet::new(),
            bytes: 0,
            memory: HashMap::new(),
            disk: None,
        }
    }

    /// A cache kept in the redb file at `path` (created when missing), with what it held.
    pub fn open(path: &Path, limits: AttachmentLimits) -> Result<Self, AttachmentCacheError> {
        let database = redb::Builder::new()
            .set_cache_size(PAGE_CACHE_BYTES)
            .create(path)
            .map_err(disk_error)?;
        let write = database.begin_write().map_err(disk_error)?;
        write.open_table(CHUNKS).map_err(disk_error)?;
        write.open_table(ATTACHMENTS).map_err(disk_error)?;
        write.commit().map_err(disk_error)?;
        let mut cache = Self::in_memory(limits);
        {
            let read = database.begin_read().map_err(disk_error)?;
            let attachments = read.open_table(ATTACHMENTS).map_err(disk_error)?;
            for entry in attachments.iter().map_err(disk_error)? {
                let (key, id) = entry.map_err(disk_error)?;
                let (root, size) = key.value();
                let Ok(root) = Hash::try_from(root) else {
                    continue;
                };
                let key = AttachmentKey { root, size };
                let id = AttachmentId::from_bytes(id.value().to_be_bytes());
                cache.add(key, id, id.timestamp());
            }
            let chunks = read.open_table(CHUNKS).map_err(disk_error)?;
            for entry in chunks.iter().map_err(disk_error)? {
                let (key, _) = entry.map_err(disk_error)?;
                let (root, size, index) = key.value();
                let Ok(root) = Hash::try_from(root) else {
                    continue;
                };
                let key = AttachmentKey { root, size };
                if let Some(entry) = cache.entries.get_mut(&key) {
                    if entry.held.insert(index) {
                        let bytes = chunk_len(size, index) as u64;
                        entry.held_bytes += bytes;
                        cache.bytes += bytes;
                    }
                }
            }
        }
        cache.disk = Some(database);
        Ok(cache)
    }

    /// Takes in attachment `key` posted as `id`, to be fetched, if it may fit; room is taken as
    /// its chunks come ([`Self::put_chunk`]). False when it is held already, larger than the
    /// whole budget, older than everything kept in a full cache, or [`MAX_INCOMPLETE`] others
    /// are being fetched.
    pub fn admit(
        &mut self,
        key: AttachmentKey,
        id: AttachmentId,
        now: UnixMillis,
    ) -> Result<bool, AttachmentCacheError> {
        if self.entries.contains_key(&key) || key.size > self.limits.max_bytes {
            return Ok(false);
        }
        let incomplete = self
            .entries
            .iter()
            .filter(|(key, entry)| !entry.is_complete(key))
            .count();
        if incomplete >= MAX_INCOMPLETE {
            return Ok(false);
        }
        let room_after_older = self
            .by_age
            .range(..(id, key))
            .filter_map(|(_, older)| self.entries.get(older))
            .map(|entry| entry.held_bytes)
            .sum::<u64>()
            + self.limits.max_bytes.saturating_sub(self.bytes);
        if room_after_older < key.size {
            return Ok(false);
        }
        if let Some(database) = &self.disk {
            let write = database.begin_write().map_err(disk_error)?;
            {
                let mut table = write.open_table(ATTACHMENTS).map_err(disk_error)?;
                let value = u128::from_be_bytes(id.to_bytes());
                table
                    .insert((key.root.as_slice(), key.size), value)
                    .map_err(disk_error)?;
            }
            write.commit().map_err(disk_error)?;
        }
        self.add(key, id, now);
        Ok(true)
    }

    /// Drops the incomplete attachments that gained no chunk for [`STALLED_MILLIS`]; returns
    /// them.
    pub fn drop_stalled(
        &mut self,
        now: UnixMillis,
    ) -> Result<Vec<AttachmentKey>, AttachmentCacheError> {
        let stalled: Vec<AttachmentKey> = self
            .entries
            .iter()
            .filter(|(key, entry)| {
                !entry.is_complete(key)
                    && entry.progress_at.saturating_add_millis(STALLED_MILLIS) <= now
            })
            .map(|(key, _)| *key)
            .collect();
        for key in &stalled {
            self.remove(*key)?;
        }
        Ok(stalled)
    }

    /// Evicts the attachments posted before `oldest_kept`; returns them.
    pub fn evict_older_than(
        &mut self,
        oldest_kept: UnixMillis,
    ) -> Result<Vec<AttachmentKey>, AttachmentCacheError> {
        self.evict_while(|cache| {
            cache
                .by_age
                .first()
                .is_some_and(|(id, _)| id.timestamp() < oldest_kept)
        })
    }

    /// Keeps a verified chunk of an attachment admitted, evicting the oldest attachments while
    /// the budget is exceeded.
    pub fn put_chunk(
        &mut self,
        key: AttachmentKey,
        index: u64,
        data: Vec<u8>,
        proof: Vec<Hash>,
        now: UnixMillis,
    ) -> Result<PutChunk, AttachmentCacheError> {
        let Some(entry) = self.entries.get_mut(&key) else {
            return Ok(PutChunk {
                kept: false,
                evicted: Vec::new(),
            });
        };
        if entry.held.insert(index) {
            entry.held_bytes += data.len() as u64;
            self.bytes += data.len() as u64;
        }
        entry.progress_at = now;
        let complete = entry.is_complete(&key);
        match &self.disk {
            Some(database) => {
                let mut value = proof.concat();
                value.extend_from_slice(&data);
                let mut write = database.begin_write().map_err(disk_error)?;
                // Made durable with the file's last chunk (or the next durable commit): a crash
                // before then loses those chunks (fetched again after the restart), nothing else.
                if !complete {
                    write.set_durability(redb::Durability::None);
                }
                {
                    let mut table = write.open_table(CHUNKS).map_err(disk_error)?;
                    table
                        .insert((key.root.as_slice(), key.size, index), value.as_slice())
                        .map_err(disk_error)?;
                }
                write.commit().map_err(disk_error)?;
            }
            None => {
                self.memory.insert((key, index), (data, proof));
            }
        }
        let evicted = self.evict_while(|cache| cache.bytes > cache.limits.max_bytes)?;
        Ok(PutChunk {
            kept: !evicted.contains(&key),
            evicted,
        })
    }

    /// Chunk `index` of `key` and its proof, when held.
    pub fn read_chunk(
        &self,
        key: AttachmentKey,
        index: u64,
    ) -> Result<Option<ChunkWithProof>, AttachmentCacheError> {
        let Some(database) = &self.disk else {
            return Ok(self.memory.get(&(key, index)).cloned());
        };
        let proof_len = proof_length(key.size, index);
        let read = database.begin_read().map_err(disk_error)?;
        let table = read.open_table(CHUNKS).map_err(disk_error)?;
        let Some(value) = table
            .get((key.root.as_slice(), key.size, index))
            .map_err(disk_error)?
        else {
            return Ok(None);
        };
        let value = value.value();
        if value.len() < 32 * proof_len {
            return Ok(None);
        }
        let (proof, data) = value.split_at(32 * proof_len);
        let proof = proof
            .chunks_exact(32)
            .filter_map(|hash| Hash::try_from(hash).ok())
            .collect();
        Ok(Some((data.to_vec(), proof)))
    }

    /// The attachments admitted and not complete (to fetch again after a restart), with the
    /// chunks held.
    pub fn incomplete(&self) -> Vec<(AttachmentKey, Vec<u64>)> {
        self.entries
            .iter()
            .filter(|(key, entry)| !entry.is_complete(key))
            .map(|(key, entry)| (*key, entry.held.iter().copied().collect()))
            .collect()
    }

    /// The attachments held whole.
    pub fn complete(&self) -> Vec<AttachmentKey> {
        self.entries
            .iter()
            .filter(|(key, entry)| entry.is_complete(key))
            .map(|(key, _)| *key)
            .collect()
    }

    /// How many attachments are held whole.
    pub fn complete_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|(key, entry)| entry.is_complete(key))
            .count()
    }

    /// Bytes of the chunks held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn add(&mut self, key: AttachmentKey, id: AttachmentId, now: UnixMillis) {
        let entry = Entry {
            held: BTreeSet::new(),
            held_bytes: 0,
            progress_at: now,
        };
        self.entries.insert(key, entry);
        self.by_age.insert((id, key));
    }

    /// Drops `key` and its chunks.
    pub fn remove(&mut self, key: AttachmentKey) -> Result<(), AttachmentCacheError> {
        self.by_age.retain(|(_, kept)| *kept != key);
        if let Some(entry) = self.entries.remove(&key) {
            self.bytes -= entry.held_bytes;
            self.forget_chunks(key, &entry.held)?;
        }
        Ok(())
    }

    fn evict_while(
        &mut self,
        mut condition: impl FnMut(&Self) -> bool,
    ) -> Result<Vec<AttachmentKey>, AttachmentCacheError> {
        let mut evicted = Vec::new();
        while condition(self) {
            let Some((_, key)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&key) {
                self.bytes -= entry.held_bytes;
                self.forget_chunks(key, &entry.held)?;
            }
            evicted.push(key);
        }
        Ok(evicted)
    }

    fn forget_chunks(
        &mut self,
        key: AttachmentKey,
        held: &BTreeSet<u64>,
    ) -> Result<(), AttachmentCacheError> {
        let Some(database) = &self.disk else {
            for index in held {
                self.memory.remove(&(key, *index));
            }
            return Ok(());
        };
        let write = database.begin_write().map_err(disk_error)?;
        {
            let mut chunks = write.open_table(CHUNKS).map_err(disk_error)?;
            for index in held {
                chunks
                    .remove((key.root.as_slice(), key.size, *index))
                    .map_err(disk_error)?;
            }
            let mut attachments = write.open_table(ATTACHMENTS).map_err(disk_error)?;
            attachments
                .remove((key.root.as_slice(), key.size))
                .map_err(disk_error)?;
        }
        write.commit().map_err(disk_error)
    }
}

/// How many hashes the proof of chunk `index` of an attachment of `size` bytes has.
fn proof_length(size: u64, index: u64) -> usize {
    // The audit path of RFC 9162: one hash for each level at which the node has a sibling.
    let (mut at, mut last, mut length) = (index, chunk_count(size) - 1, 0);
    while last > 0 {
        if at & 1 == 1 || at < last {
            length += 1;
        }
        at >>= 1;
        last >>= 1;
    }
    length
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]
mod tests {
    use super::*;
    use peerchat_shared::chunk_tree::{leaf_hash, ChunkTree, CHUNK_BYTES};
    use peerchat_shared::ids::MessageId;

    fn key(n: u8, size: u64) -> AttachmentKey {
        AttachmentKey {
            root: [n; 32],
            size,
        }
    }

    /// The first attachment of a message stamped at `millis`.
    fn posted_at(millis: u64) -> AttachmentId {
        AttachmentId::of(MessageId::first_at(UnixMillis(millis)), 0).unwrap()
    }

    /// Runs `check` against a cache in memory and one in a redb file.
    fn for_each_cache(limits: AttachmentLimits, check: impl Fn(&mut AttachmentCache)) {
        check(&mut AttachmentCache::in_memory(limits));
        let dir = tempfile::tempdir().unwrap();
        check(&mut AttachmentCache::open(&dir.path().join("a.redb"), limits).unwrap());
    }

    const CHUNK: u64 = CHUNK_BYTES as u64;

    /// Stores chunk `index` of `key` (full-sized, made up: the cache trusts the engine's check).
    fn put(cache: &mut AttachmentCache, key: AttachmentKey, index: u64) -> PutChunk {
        put_at(cache, key, index, UnixMillis(0))
    }

    fn put_at(
        cache: &mut AttachmentCache,
        key: AttachmentKey,
        index: u64,
        now: UnixMillis,
    ) -> PutChunk {
        let data = vec![7; chunk_len(key.size, index)];
        cache.put_chunk(key, index, data, vec![], now).unwrap()
    }

    #[test]
    fn the_oldest_attachments_make_room_for_new_chunks_within_the_budget() {
        for_each_cache(
            AttachmentLimits {
                max_bytes: 3 * CHUNK,
            },
            |cache| {
                let now = UnixMillis(0);
                assert!(cache.admit(key(1, CHUNK), posted_at(1_000), now).unwrap());
                assert!(put(cache, key(1, CHUNK), 0).evicted.is_empty());
                assert!(cache.admit(key(2, CHUNK), posted_at(2_000), now).unwrap());
                assert!(put(cache, key(2, CHUNK), 0).evicted.is_empty());
                assert!(cache
                    .admit(key(3, 2 * CHUNK), posted_at(3_000), now)
                    .unwrap());
                assert_eq!(cache.bytes(), 2 * CHUNK, "a description takes no room");
                assert!(put(cache, key(3, 2 * CHUNK), 0).evicted.is_empty());
                assert_eq!(
                    put(cache, key(3, 2 * CHUNK), 1),
                    PutChunk {
                        kept: true,
                        evicted: vec![key(1, CHUNK)]
                    }
                );
                assert_eq!(cache.bytes(), 3 * CHUNK);
                assert!(
                    !cache
                        .admit(key(3, 2 * CHUNK), posted_at(3_000), now)
                        .unwrap(),
                    "held"
                );
                assert!(
                    !cache
                        .admit(key(4, 4 * CHUNK), posted_at(4_000), now)
                        .unwrap(),
                    "larger than the budget"
                );
                assert!(
                    !cache.admit(key(5, 2 * CHUNK), posted_at(500), now).unwrap(),
                    "older than everything a full cache keeps"
                );
                assert_eq!(
                    cache.evict_older_than(UnixMillis(2_500)).unwrap(),
                    vec![key(2, CHUNK)]
                );
                assert_eq!(cache.complete(), vec![key(3, 2 * CHUNK)]);
            },
        );
    }

    #[test]
    fn made_up_descriptions_evict_nothing_and_are_bounded() {
        for_each_cache(
            AttachmentLimits {
                max_bytes: 4 * CHUNK,
            },
            |cache| {
                let now = UnixMillis(0);
                let real = key(0, 2 * CHUNK);
                cache.admit(real, posted_at(1_000), now).unwrap();
                put(cache, real, 0);
                put(cache, real, 1);
                let mut admitted = 0;
                for n in 1..=(MAX_INCOMPLETE + 5) {
                    let fake = key(n as u8, 4 * CHUNK);
                    admitted += usize::from(cache.admit(fake, posted_at(2_000), now).unwrap());
                }
                assert_eq!(admitted, MAX_INCOMPLETE);
                assert_eq!(cache.complete(), vec![real], "nothing evicted");
                assert_eq!(cache.bytes(), 2 * CHUNK);
            },
        );
    }

    #[test]
    fn an_attachment_that_gains_no_chunk_for_a_while_is_dropped() {
        for_each_cache(AttachmentLimits::default(), |cache| {
            let start = UnixMillis(5_000);
            let (stalled, complete) = (key(1, 2 * CHUNK), key(2, CHUNK));
            cache.admit(stalled, posted_at(1_000), start).unwrap();
            cache.admit(complete, posted_at(1_000), start).unwrap();
            put_at(cache, complete, 0, start);
            let progress = start.saturating_add_millis(1_000);
            put_at(cache, stalled, 0, progress);
            let almost = progress.saturating_add_millis(STALLED_MILLIS - 1);
            assert!(cache.drop_stalled(almost).unwrap().is_empty());
            let later = progress.saturating_add_millis(STALLED_MILLIS);
            assert_eq!(cache.drop_stalled(later).unwrap(), vec![stalled]);
            assert_eq!(cache.read_chunk(stalled, 0).unwrap(), None);
            assert_eq!(cache.complete(), vec![complete]);
            assert_eq!(cache.bytes(), CHUNK);
        });
    }

    #[test]
    fn chunks_read_back_as_stored_with_their_proofs() {
        let bytes: Vec<u8> = (0..3 * CHUNK_BYTES + 5).map(|i| (i % 249) as u8).collect();
        let tree = ChunkTree::from_leaves(bytes.chunks(CHUNK_BYTES).map(leaf_hash).collect());
        let file = AttachmentKey {
            root: tree.root(),
            size: bytes.len() as u64,
        };
        for_each_cache(AttachmentLimits::default(), |cache| {
            let now = UnixMillis(0);
            assert!(
                !cache.put_chunk(file, 0, vec![1], vec![], now).unwrap().kept,
                "not admitted: not kept"
            );
            cache.admit(file, posted_at(1_000), now).unwrap();
            for (index, chunk) in bytes.chunks(CHUNK_BYTES).enumerate().skip(1) {
                let proof = tree.proof(index);
                assert!(
                    cache
                        .put_chunk(file, index as u64, chunk.to_vec(), proof, now)
                        .unwrap()
                        .kept
                );
            }
            assert_eq!(cache.incomplete(), vec![(file, vec![1, 2, 3])]);
            assert_eq!(cache.read_chunk(file, 0).unwrap(), None);
            for index in 1..4usize {
                let start = index * CHUNK_BYTES;
                let end = (start + CHUNK_BYTES).min(bytes.len());
                assert_eq!(
                    cache.read_chunk(file, index as u64).unwrap(),
                    Some((bytes[start..end].to_vec(), tree.proof(index)))
                );
            }
            cache.evict_older_than(UnixMillis(2_000)).unwrap();
            assert_eq!(
                cache.read_chunk(file, 1).unwrap(),
                None,
                "evicted with its chunks"
            );
        });
    }

    #[test]
    fn a_cache_file_keeps_its_attachments_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        let limits = AttachmentLimits::default();
        let file = key(9, 2 * CHUNK_BYTES as u64);
        {
            let mut cache = AttachmentCache::open(&path, limits).unwrap();
            let now = UnixMillis(0);
            cache.admit(file, posted_at(1_000), now).unwrap();
            cache
                .put_chunk(file, 1, vec![7; CHUNK_BYTES], vec![[3; 32]], now)
                .unwrap();
        }
        let cache = AttachmentCache::open(&path, limits).unwrap();
        assert_eq!(cache.incomplete(), vec![(file, vec![1])]);
        assert_eq!(cache.bytes(), CHUNK_BYTES as u64);
        assert_eq!(
            cache.read_chunk(file, 1).unwrap(),
            Some((vec![7; CHUNK_BYTES], vec![[3; 32]]))
        );
    }

    #[test]
    fn proof_lengths_match_the_tree() {
        for count in 1..70usize {
            let tree = ChunkTree::from_leaves(vec![leaf_hash(b"x"); count]);
            let size = (count * CHUNK_BYTES) as u64;
            for index in 0..count {
                assert_eq!(
                    proof_length(size, index as u64),
                    tree.proof(index).len(),
                    "chunk {index} of {count}"
                );
            }
        }
    }
}
