//! The binary chunk frames (docs/protocol.md §10.6): chunks are bytes, so they travel as
//! binary data channel messages rather than base64 in JSON, which would cost a third more on
//! the wire and a decode on every side. Through the relay a frame is the unpadded base64url of
//! the same bytes.
//!
//! Every frame starts with its kind and the attachment it is about:
//!
//! ```text
//! kind (1) ‖ root (32) ‖ size (8, big-endian)
//! chunk_want, chunk_missing: count (1, 1 to 16) ‖ count × index (8 each)
//! chunk:                     index (8) ‖ proof length (1, at most 15) ‖ proof (32 each) ‖ data
//! chunk_have:                nothing more
//! ```
//!
//! Decoding checks everything that can be checked without the store: the size is within the
//! attachment limit, each index names a chunk of an attachment of that size, the data is exactly
//! that chunk's length, nothing trails. Whether the data matches the root is the engine's check.

use super::AttachmentKey;
use crate::chunk_tree::{chunk_count, chunk_len, Hash, CHUNK_BYTES};
use crate::limits::MAX_ATTACHMENT_BYTES;

/// Most chunks one `chunk_want` (or `chunk_missing`) names.
pub const MAX_CHUNK_WANT: usize = 16;
/// The longest proof: the largest attachment has 2^15 chunks.
const MAX_PROOF_HASHES: usize = 15;
const HEADER_BYTES: usize = 1 + 32 + 8;
/// The largest chunk frame: a full chunk with the longest proof.
const MAX_CHUNK_FRAME_BYTES: usize = HEADER_BYTES + 8 + 1 + 32 * MAX_PROOF_HASHES + CHUNK_BYTES;

const KIND_WANT: u8 = 0x01;
const KIND_CHUNK: u8 = 0x02;
const KIND_MISSING: u8 = 0x03;
const KIND_HAVE: u8 = 0x04;

/// What peers say to each other about chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkFrame {
    /// "Send me these chunks" (1 to [`MAX_CHUNK_WANT`]).
    Want {
        key: AttachmentKey,
        chunks: Vec<u64>,
    },
    /// One chunk and its proof.
    Chunk {
        key: AttachmentKey,
        index: u64,
        proof: Vec<Hash>,
        data: Vec<u8>,
    },
    /// "I do not hold these."
    Missing {
        key: AttachmentKey,
        chunks: Vec<u64>,
    },
    /// "I hold all of it now."
    Have { key: AttachmentKey },
}

/// Why bytes are not a chunk frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkFrameError {
    #[error("a chunk frame is {0} bytes, shorter than its header")]
    Truncated(usize),
    #[error("a chunk frame is {0} bytes, more than the largest chunk frame")]
    TooLarge(usize),
    #[error("unknown chunk frame kind {0:#04x}")]
    UnknownKind(u8),
    #[error("an attachment of {0} bytes, more than the limit")]
    SizeOverLimit(u64),
    #[error("{0} chunk indices; a frame names 1 to 16")]
    BadCount(usize),
    #[error("chunk {index} of an attachment that has {count}")]
    NoSuchChunk { index: u64, count: u64 },
    #[error("a proof of {0} hashes; the longest has 15")]
    ProofTooLong(usize),
    #[error("chunk {index} holds {len} bytes, not {expected}")]
    WrongLength {
        index: u64,
        len: usize,
        expected: usize,
    },
    #[error("the frame's length does not match what it declares")]
    LengthMismatch,
}

impl ChunkFrame {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, key) = match self {
            Self::Want { key, .. } => (KIND_WANT, key),
            Self::Chunk { key, .. } => (KIND_CHUNK, key),
            Self::Missing { key, .. } => (KIND_MISSING, key),
            Self::Have { key } => (KIND_HAVE, key),
        };
        let mut bytes = Vec::with_capacity(self.encoded_len());
        bytes.push(kind);
        bytes.extend_from_slice(&key.root);
        bytes.extend_from_slice(&key.size.to_be_bytes());
        match self {
            Self::Want { chunks, .. } | Self::Missing { chunks, .. } => {
                // The engine names at most MAX_CHUNK_WANT chunks in a frame.
                bytes.push(chunks.len() as u8);
                for index in chunks {
                    bytes.extend_from_slice(&index.to_be_bytes());
                }
            }
            Self::Chunk {
                index, proof, data, ..
            } => {
                bytes.extend_from_slice(&index.to_be_bytes());
                // Proofs come from the tree, at most MAX_PROOF_HASHES long.
                bytes.push(proof.len() as u8);
                for hash in proof {
                    bytes.extend_from_slice(hash);
                }
                bytes.extend_from_slice(data);
            }
            Self::Have { .. } => {}
        }
        bytes
    }

    fn encoded_len(&self) -> usize {
        HEADER_BYTES
            + match self {
                Self::Want { chunks, .. } | Self::Missing { chunks, .. } => 1 + 8 * chunks.len(),
                Self::Chunk { proof, data, .. } => 8 + 1 + 32 * proof.len() + data.len(),
                Self::Have { .. } => 0,
            }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ChunkFrameError> {
        if bytes.len() > MAX_CHUNK_FRAME_BYTES {
            return Err(ChunkFrameError::TooLarge(bytes.len()));
        }
        let mut reader = Reader(bytes);
        let too_short = ChunkFrameError::Truncated(bytes.len());
        let kind = reader.byte().ok_or(too_short.clone())?;
        let root: Hash = reader.array().ok_or(too_short.clone())?;
        let size = u64::from_be_bytes(reader.array().ok_or(too_short.clone())?);
        if size > MAX_ATTACHMENT_BYTES {
            return Err(ChunkFrameError::SizeOverLimit(size));
        }
        let key = AttachmentKey { root, size };
        let count = chunk_count(size);
        let frame = match kind {
            KIND_WANT | KIND_MISSING => {
                let n = usize::from(reader.byte().ok_or(too_short)?);
                if n == 0 || n > MAX_CHUNK_WANT {
                    return Err(ChunkFrameError::BadCount(n));
                }
                let mut chunks = Vec::with_capacity(n);
                for _ in 0..n {
                    let index = reader.index(count)?;
                    chunks.push(index);
                }
                if kind == KIND_WANT {
                    Self::Want { key, chunks }
                } else {
                    Self::Missing { key, chunks }
                }
            }
            KIND_CHUNK => {
                let index = reader.index(count)?;
                let hashes = usize::from(reader.byte().ok_or(too_short.clone())?);
                if hashes > MAX_PROOF_HASHES {
                    return Err(ChunkFrameError::ProofTooLong(hashes));
                }
                let mut proof = Vec::with_capacity(hashes);
                for _ in 0..hashes {
                    proof.push(reader.array().ok_or(too_short.clone())?);
                }
                let data = reader.rest().to_vec();
                let expected = chunk_len(size, index);
                if data.len() != expected {
                    return Err(ChunkFrameError::WrongLength {
                        index,
                        len: data.len(),
                        expected,
                    });
                }
                Self::Chunk {
                    key,
                    index,
                    proof,
                    data,
                }
            }
            KIND_HAVE => Self::Have { key },
            other => return Err(ChunkFrameError::UnknownKind(other)),
        };
        if !reader.0.is_empty() {
            return Err(ChunkFrameError::LengthMismatch);
        }
        Ok(frame)
    }
}

/// Reads a frame front to back.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    /// A chunk index below `count`.
    fn index(&mut self, count: u64) -> Result<u64, ChunkFrameError> {
        let index = u64::from_be_bytes(self.array().ok_or(ChunkFrameError::LengthMismatch)?);
        if index >= count {
            return Err(ChunkFrameError::NoSuchChunk { index, count });
        }
        Ok(index)
    }

    fn rest(&mut self) -> &[u8] {
        std::mem::take(&mut self.0)
    }
}
