//! The hash tree over an attachment's chunks, so that every chunk is checked on arrival, from
//! any peer, before it is kept or passed on, without first fetching a list of all the chunks'
//! hashes.
//!
//! An attachment is cut into chunks of [`CHUNK_BYTES`] (the last one shorter; an empty file has
//! one empty chunk). The tree is the Merkle tree of RFC 9162 (Certificate Transparency v2),
//! section 2.1, over the chunks in order, with SHA-256:
//!
//! - a leaf is `SHA-256(0x00 ‖ chunk)`;
//! - a node over `n > 1` leaves is `SHA-256(0x01 ‖ left ‖ right)`, where `left` is the tree over
//!   the first `k` leaves, `k` the largest power of two below `n`, and `right` the tree over the
//!   rest.
//!
//! A chunk travels with its **proof**, the audit path of RFC 9162 section 2.1.3 (the sibling
//! hashes from the leaf up, at most 15 for the largest attachment), and is kept only when the
//! proof leads from it to the signed root. Any RFC 9162 implementation checks these proofs.

use sha2::{Digest as _, Sha256};

/// Bytes of every chunk but the last. 32 KiB keeps a chunk message (chunk, proof and header)
/// within 64 KiB, the largest data channel message that browsers and the `webrtc` crate exchange
/// without configuration, with room to spare; the transfer's throughput benchmark is what may
/// still move it (a change of chunk size changes every root, so it is part of the protocol).
pub const CHUNK_BYTES: usize = 32 * 1024;

/// A SHA-256 hash: a leaf, a node or a root.
pub type Hash = [u8; 32];

/// How many chunks an attachment of `size` bytes has.
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_BYTES as u64).max(1)
}

/// The length of chunk `index` of an attachment of `size` bytes.
pub fn chunk_len(size: u64, index: u64) -> usize {
    let start = index.saturating_mul(CHUNK_BYTES as u64);
    // At most CHUNK_BYTES, which fits in usize.
    size.saturating_sub(start).min(CHUNK_BYTES as u64) as usize
}

pub fn leaf_hash(chunk: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(chunk)
        .finalize()
        .into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// Every level of the tree, leaves first: the root and any proof in O(log n). Built bottom-up,
/// pairing nodes and carrying an odd last one up unchanged, which gives RFC 9162's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkTree {
    levels: Vec<Vec<Hash>>,
}

impl ChunkTree {
    /// The tree over `leaves`, in chunk order (an empty list stands for an empty file).
    pub fn from_leaves(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![if leaves.is_empty() {
            vec![leaf_hash(&[])]
        } else {
            leaves
        }];
        while let Some(below) = levels.last().filter(|level| level.len() > 1) {
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    // An odd last node.
                    _ => pair[0],
                })
                .collect();
            levels.push(above);
        }
        Self { levels }
    }

    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|top| top.first())
            .copied()
            .unwrap_or_default()
    }

    pub fn chunk_count(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// The audit path of chunk `index`, from its sibling up (empty when out of range).
    pub fn proof(&self, index: usize) -> Vec<Hash> {
        if index >= self.chunk_count() {
            return Vec::new();
        }
        let mut path = Vec::new();
        let mut at = index;
        for level in &self.levels[..self.levels.len() - 1] {
            // An odd last node has no sibling at this level: it is carried up as it is.
            if let Some(sibling) = level.get(at ^ 1) {
                path.push(*sibling);
            }
            at /= 2;
        }
        path
    }
}

/// Hashes a file as it is read, in pieces of any size: its SHA-256 (what `sha256sum` prints) and
/// its chunk tree, holding one chunk's worth of state, never the file.
#[derive(Debug, Clone, Default)]
pub struct FileHasher {
    whole: Sha256,
    chunk: Option<Sha256>,
    in_chunk: usize,
    leaves: Vec<Hash>,
    size: u64,
}

impl FileHasher {
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.whole.update(bytes);
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = bytes.len().min(CHUNK_BYTES - self.in_chunk);
            let (piece, rest) = bytes.split_at(take);
            self.chunk
                .get_or_insert_with(|| Sha256::new().chain_update([0x00]))
                .update(piece);
            self.in_chunk += take;
            bytes = rest;
            if self.in_chunk == CHUNK_BYTES {
                self.end_chunk();
            }
        }
    }

    fn end_chunk(&mut self) {
        if let Some(chunk) = self.chunk.take() {
            self.leaves.push(chunk.finalize().into());
        }
        self.in_chunk = 0;
    }

    /// The file's size, SHA-256 and chunk tree.
    pub fn finish(mut self) -> (u64, Hash, ChunkTree) {
        self.end_chunk();
        let sha256 = self.whole.finalize().into();
        (self.size, sha256, ChunkTree::from_leaves(self.leaves))
    }
}

/// Whether `chunk` is chunk `index` of the attachment of `size` bytes whose tree has `root`, by
/// its `proof` (RFC 9162 section 2.1.3.2). A chunk of the wrong length never is.
pub fn verify_chunk(root: &Hash, size: u64, index: u64, chunk: &[u8], proof: &[Hash]) -> bool {
    let count = chunk_count(size);
    if index >= count || chunk.len() != chunk_len(size, index) {
        return false;
    }
    // RFC 9162's `fn` and `sn`: this node's index and the last index, level by level.
    let (mut at, mut last) = (index, count - 1);
    let mut hash = leaf_hash(chunk);
    for sibling in proof {
        if last == 0 {
            return false;
        }
        if at & 1 == 1 || at == last {
            hash = node_hash(sibling, &hash);
            while at & 1 == 0 && at != 0 {
                at >>= 1;
                last >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        at >>= 1;
        last >>= 1;
    }
    last == 0 && hash == *root
}
