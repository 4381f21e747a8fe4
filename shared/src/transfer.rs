//! Attachment transfer between peers, sans-IO: which chunks to ask of whom, every chunk checked
//! against the signed chunk tree before it is stored, and serving what this member holds within
//! per-peer bounds. The node will drive it beside the sync engine; its frames are not on the
//! wire yet (docs/protocol.md §10.5).
//!
//! - **Fetching**: an attachment being fetched is asked of every linked peer not known to lack
//!   it, lowest missing chunk first, at most [`TransferLimits::chunks_in_flight_per_peer`] from
//!   each, so chunks come from several peers at once and a fast peer serves more. A request
//!   unanswered within [`TransferLimits::request_timeout_millis`] is asked again, of any peer; a
//!   peer whose requests expire [`TransferLimits::failures_before_giving_up`] times in a row is
//!   no longer asked for that attachment. `chunk_missing` takes a peer off at once.
//! - **Verification**: a chunk is stored only when its proof leads to the root; a peer that
//!   sends one that does not, or too many chunks nobody asked for, is disconnected, and the
//!   chunk is asked of another peer.
//! - **Memory**: the engine holds one bit per chunk and the requests in flight, never the bytes:
//!   a verified chunk goes straight out to the store, so a 1 GiB file never sits in memory.
//! - **Resuming**: chunks already stored (after a reload, say) are handed in with
//!   [`TransferInput::Fetch`] and never asked for again.
//! - **Serving**: a peer may have [`TransferLimits::serving_per_peer`] chunks being read for it
//!   at once and is served at most [`TransferLimits::chunks_per_second_per_peer`]; requests
//!   beyond either are ignored (its time-outs ask elsewhere), so a peer that asks for the same
//!   chunk in a loop costs little.

use crate::budget::Budget;
use crate::chunk_tree::{chunk_count, verify_chunk, Hash};
use crate::sync::PeerId;
use crate::time::UnixMillis;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Most chunks one `chunk_want` asks for.
pub const MAX_CHUNK_WANT: usize = 16;

/// The engine's tunables; [`TransferLimits::default`] is what clients use.
#[derive(Debug, Clone)]
pub struct TransferLimits {
    /// Chunks asked of one peer and not answered yet (8 × 32 KiB in flight per peer).
    pub chunks_in_flight_per_peer: usize,
    pub request_timeout_millis: u64,
    pub failures_before_giving_up: u32,
    /// Chunks nobody asked for that a peer may send before it is disconnected.
    pub unasked_chunks_per_peer: u32,
    /// Chunks being read from the store for one peer at once.
    pub serving_per_peer: usize,
    /// Chunks served to one peer per second, and the burst above it.
    pub chunks_per_second_per_peer: f64,
    pub chunk_burst_per_peer: f64,
}

impl Default for TransferLimits {
    fn default() -> Self {
        Self {
            chunks_in_flight_per_peer: 8,
            request_timeout_millis: 4_000,
            failures_before_giving_up: 3,
            unasked_chunks_per_peer: 64,
            serving_per_peer: 16,
            chunks_per_second_per_peer: 640.0,
            chunk_burst_per_peer: 1_280.0,
        }
    }
}

/// What peers say to each other about chunks. An attachment is named by its chunk tree root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkFrame {
    /// "Send me these chunks" (at most [`MAX_CHUNK_WANT`]).
    Want { root: Hash, chunks: Vec<u64> },
    /// One chunk and its proof.
    Chunk {
        root: Hash,
        index: u64,
        proof: Vec<Hash>,
        data: Vec<u8>,
    },
    /// "I do not hold these."
    Missing { root: Hash, chunks: Vec<u64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferInput {
    /// Fetch the attachment of `size` bytes whose tree has `root`, of which the chunks `held`
    /// are already stored (none for a new fetch). Fetching one already being fetched changes
    /// nothing.
    Fetch {
        root: Hash,
        size: u64,
        held: Vec<u64>,
    },
    Cancel {
        root: Hash,
    },
    PeerUp {
        peer: PeerId,
    },
    PeerDown {
        peer: PeerId,
    },
    Frame {
        peer: PeerId,
        frame: ChunkFrame,
    },
    /// The chunk read for a [`TransferOutput::ReadChunk`], with the proof stored beside it, or
    /// `None` when the store does not hold it.
    ChunkRead {
        peer: PeerId,
        root: Hash,
        index: u64,
        chunk: Option<(Vec<u8>, Vec<Hash>)>,
    },
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutput {
    Send {
        peer: PeerId,
        frame: ChunkFrame,
    },
    /// Read chunk `index` of `root` and its proof, and hand them back as
    /// [`TransferInput::ChunkRead`].
    ReadChunk {
        peer: PeerId,
        root: Hash,
        index: u64,
    },
    /// Store this verified chunk with its proof (which serves it to others later).
    StoreChunk {
        root: Hash,
        index: u64,
        data: Vec<u8>,
        proof: Vec<Hash>,
        from: PeerId,
    },
    /// Every chunk of `root` is stored.
    Complete {
        root: Hash,
    },
    /// Chunks of `root` are missing and no linked peer is left to ask: fetching resumes when a
    /// peer comes.
    Unavailable {
        root: Hash,
    },
    Disconnect {
        peer: PeerId,
        reason: String,
    },
}

/// One attachment being fetched.
#[derive(Debug)]
struct Fetching {
    size: u64,
    /// One bit per chunk: stored.
    held: Vec<u64>,
    held_count: u64,
    /// Chunk → who was asked and until when.
    in_flight: BTreeMap<u64, (PeerId, UnixMillis)>,
    /// Peers that lack it or failed too often.
    not_asked: BTreeSet<PeerId>,
    failures: HashMap<PeerId, u32>,
    said_unavailable: bool,
}

impl Fetching {
    fn new(size: u64) -> Self {
        let count = chunk_count(size);
        Self {
            size,
            held: vec![0; count.div_ceil(64) as usize],
            held_count: 0,
            in_flight: BTreeMap::new(),
            not_asked: BTreeSet::new(),
            failures: HashMap::new(),
            said_unavailable: false,
        }
    }

    fn count(&self) -> u64 {
        chunk_count(self.size)
    }

    fn holds(&self, index: u64) -> bool {
        self.held
            .get((index / 64) as usize)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    /// Marks a chunk stored; false when it already was.
    fn hold(&mut self, index: u64) -> bool {
        let Some(word) = self.held.get_mut((index / 64) as usize) else {
            return false;
        };
        let bit = 1 << (index % 64);
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.held_count += 1;
        true
    }

    fn is_complete(&self) -> bool {
        self.held_count == self.count()
    }

    /// The next chunks nobody holds or was asked for, lowest first, at most `limit`.
    fn next_wanted(&self, limit: usize) -> Vec<u64> {
        (0..self.count())
            .filter(|index| !self.holds(*index) && !self.in_flight.contains_key(index))
            .take(limit)
            .collect()
    }
}

#[derive(Debug)]
struct PeerState {
    in_flight: usize,
    unasked_chunks: u32,
    serving: usize,
    served: Budget,
}

/// See the module documentation.
#[derive(Debug)]
pub struct TransferEngine {
    limits: TransferLimits,
    fetching: BTreeMap<Hash, Fetching>,
    peers: BTreeMap<PeerId, PeerState>,
    outputs: VecDeque<TransferOutput>,
}

impl TransferEngine {
    pub fn new(limits: TransferLimits) -> Self {
        Self {
            limits,
            fetching: BTreeMap::new(),
            peers: BTreeMap::new(),
            outputs: VecDeque::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<TransferOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        self.fetching
            .values()
            .flat_map(|fetching| fetching.in_flight.values().map(|(_, deadline)| *deadline))
            .min()
    }

    /// Chunks of `root` stored so far, and in all; `None` when it is not being fetched.
    pub fn progress(&self, root: &Hash) -> Option<(u64, u64)> {
        self.fetching
            .get(root)
            .map(|fetching| (fetching.held_count, fetching.count()))
    }

    pub fn handle(&mut self, now: UnixMillis, input: TransferInput) {
        match input {
            TransferInput::Fetch { root, size, held } => self.fetch(root, size, held),
            TransferInput::Cancel { root } => self.cancel(&root),
            TransferInput::PeerUp { peer } => {
                let served = Budget::full(
                    self.limits.chunk_burst_per_peer,
                    self.limits.chunks_per_second_per_peer,
                    now,
                );
                self.peers.entry(peer).or_insert(PeerState {
                    in_flight: 0,
                    unasked_chunks: 0,
                    serving: 0,
                    served,
                });
                for fetching in self.fetching.values_mut() {
                    fetching.said_unavailable = false;
                }
            }
            TransferInput::PeerDown { peer } => self.forget_peer(peer),
            TransferInput::Frame { peer, frame } => self.on_frame(now, peer, frame),
            TransferInput::ChunkRead {
                peer,
                root,
                index,
                chunk,
            } => self.on_chunk_read(peer, root, index, chunk),
            TransferInput::Timeout => self.expire_requests(now),
        }
        self.request_chunks(now);
    }

    fn fetch(&mut self, root: Hash, size: u64, held: Vec<u64>) {
        if self.fetching.contains_key(&root) {
            return;
        }
        let mut fetching = Fetching::new(size);
        for index in held {
            fetching.hold(index);
        }
        self.fetching.insert(root, fetching);
        self.finish_if_complete(root);
    }

    fn cancel(&mut self, root: &Hash) {
        let Some(fetching) = self.fetching.remove(root) else {
            return;
        };
        for (peer, _) in fetching.in_flight.values() {
            if let Some(state) = self.peers.get_mut(peer) {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
        }
    }

    fn forget_peer(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        for fetching in self.fetching.values_mut() {
            fetching.in_flight.retain(|_, (asked, _)| *asked != peer);
            fetching.not_asked.remove(&peer);
            fetching.failures.remove(&peer);
        }
    }

    fn disconnect(&mut self, peer: PeerId, reason: String) {
        self.forget_peer(peer);
        self.outputs
            .push_back(TransferOutput::Disconnect { peer, reason });
    }

    fn on_frame(&mut self, now: UnixMillis, peer: PeerId, frame: ChunkFrame) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        match frame {
            ChunkFrame::Want { root, chunks } => self.on_want(now, peer, root, chunks),
            ChunkFrame::Chunk {
                root,
                index,
                proof,
                data,
            } => self.on_chunk(peer, root, index, proof, data),
            ChunkFrame::Missing { root, chunks } => self.on_missing(peer, root, &chunks),
        }
    }

    fn on_want(&mut self, now: UnixMillis, peer: PeerId, root: Hash, chunks: Vec<u64>) {
        if chunks.len() > MAX_CHUNK_WANT {
            return self.disconnect(peer, format!("a chunk_want of {} chunks", chunks.len()));
        }
        let serving_per_peer = self.limits.serving_per_peer;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        for index in chunks {
            if state.serving >= serving_per_peer || !state.served.try_spend(now, 1.0) {
                // Ignored: the peer's time-out asks again, here or elsewhere.
                return;
            }
            state.serving += 1;
            self.outputs
                .push_back(TransferOutput::ReadChunk { peer, root, index });
        }
    }

    fn on_chunk_read(
        &mut self,
        peer: PeerId,
        root: Hash,
        index: u64,
        chunk: Option<(Vec<u8>, Vec<Hash>)>,
    ) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.serving = state.serving.saturating_sub(1);
        let frame = match chunk {
            Some((data, proof)) => ChunkFrame::Chunk {
                root,
                index,
                proof,
                data,
            },
            None => ChunkFrame::Missing {
                root,
                chunks: vec![index],
            },
        };
        self.outputs.push_back(TransferOutput::Send { peer, frame });
    }

    fn on_chunk(&mut self, peer: PeerId, root: Hash, index: u64, proof: Vec<Hash>, data: Vec<u8>) {
        let wanted = self
            .fetching
            .get(&root)
            .is_some_and(|fetching| index < fetching.count() && !fetching.holds(index));
        if !wanted {
            return self.note_unasked(peer);
        }
        let Some(fetching) = self.fetching.get_mut(&root) else {
            return;
        };
        if !verify_chunk(&root, fetching.size, index, &data, &proof) {
            return self.disconnect(
                peer,
                format!("chunk {index} does not match the attachment's tree"),
            );
        }
        if let Some((asked, _)) = fetching.in_flight.remove(&index) {
            if let Some(state) = self.peers.get_mut(&asked) {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
        }
        fetching.failures.remove(&peer);
        fetching.hold(index);
        self.outputs.push_back(TransferOutput::StoreChunk {
            root,
            index,
            data,
            proof,
            from: peer,
        });
        self.finish_if_complete(root);
    }

    fn note_unasked(&mut self, peer: PeerId) {
        let limit = self.limits.unasked_chunks_per_peer;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.unasked_chunks += 1;
        if state.unasked_chunks > limit {
            self.disconnect(peer, "too many chunks nobody asked for".into());
        }
    }

    fn on_missing(&mut self, peer: PeerId, root: Hash, chunks: &[u64]) {
        let Some(fetching) = self.fetching.get_mut(&root) else {
            return;
        };
        fetching.not_asked.insert(peer);
        let mut released = 0;
        for index in chunks {
            if fetching
                .in_flight
                .get(index)
                .is_some_and(|(asked, _)| *asked == peer)
            {
                fetching.in_flight.remove(index);
                released += 1;
            }
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.in_flight = state.in_flight.saturating_sub(released);
        }
    }

    fn expire_requests(&mut self, now: UnixMillis) {
        let give_up_after = self.limits.failures_before_giving_up;
        for fetching in self.fetching.values_mut() {
            let expired: Vec<(u64, PeerId)> = fetching
                .in_flight
                .iter()
                .filter(|(_, (_, deadline))| *deadline <= now)
                .map(|(index, (peer, _))| (*index, *peer))
                .collect();
            for (index, peer) in expired {
                fetching.in_flight.remove(&index);
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.in_flight = state.in_flight.saturating_sub(1);
                }
                let failures = fetching.failures.entry(peer).or_insert(0);
                *failures += 1;
                if *failures >= give_up_after {
                    fetching.not_asked.insert(peer);
                }
            }
        }
    }

    fn finish_if_complete(&mut self, root: Hash) {
        if self.fetching.get(&root).is_some_and(Fetching::is_complete) {
            self.cancel(&root);
            self.outputs.push_back(TransferOutput::Complete { root });
        }
    }

    /// Fills every peer's room with the lowest chunks nobody holds or was asked for.
    fn request_chunks(&mut self, now: UnixMillis) {
        let deadline = now.saturating_add_millis(self.limits.request_timeout_millis);
        let room = self.limits.chunks_in_flight_per_peer;
        for (root, fetching) in &mut self.fetching {
            let someone_to_ask = self
                .peers
                .keys()
                .any(|peer| !fetching.not_asked.contains(peer));
            if !someone_to_ask && !fetching.said_unavailable {
                fetching.said_unavailable = true;
                self.outputs
                    .push_back(TransferOutput::Unavailable { root: *root });
            }
            for (peer, state) in &mut self.peers {
                if fetching.not_asked.contains(peer) || state.in_flight >= room {
                    continue;
                }
                let chunks = fetching.next_wanted((room - state.in_flight).min(MAX_CHUNK_WANT));
                if chunks.is_empty() {
                    break;
                }
                for index in &chunks {
                    fetching.in_flight.insert(*index, (*peer, deadline));
                }
                state.in_flight += chunks.len();
                self.outputs.push_back(TransferOutput::Send {
                    peer: *peer,
                    frame: ChunkFrame::Want {
                        root: *root,
                        chunks,
                    },
                });
            }
        }
    }
}
