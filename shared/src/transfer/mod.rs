//! Attachment transfer between peers, sans-IO: which chunks to ask of whom, every chunk checked
//! against the signed chunk tree before it is stored, and serving what this member holds within
//! per-peer bounds. The mesh drives it beside the sync engine; its frames are binary
//! ([`ChunkFrame`], docs/protocol.md §10.6).
//!
//! - **Naming**: an attachment is its chunk tree root *and* its size ([`AttachmentKey`]). The
//!   root alone does not fix the size (an author could describe someone else's file with another
//!   size), so a holder serves only the key it holds and nobody is blamed for the other's.
//! - **Fetching**: an attachment being fetched is asked of every linked peer not known to lack
//!   it, lowest missing chunk first, at most [`TransferLimits::chunks_in_flight_per_peer`] from
//!   each ([`TransferLimits::chunks_in_flight_relayed`] through the relay), so chunks come
//!   from several peers at once and a fast peer serves more. A request
//!   unanswered within [`TransferLimits::request_timeout_millis`] is asked again, of any peer; a
//!   peer whose requests expire in [`TransferLimits::failures_before_giving_up`] rounds in a row
//!   is left alone for [`TransferLimits::give_up_millis`], then asked again; a chunk whose
//!   request to a peer expired is asked of the others first, so a peer that answers all but the
//!   last chunks cannot stall a fetch that someone else can finish. `chunk_missing` takes a
//!   peer off those chunks only, so members still fetching serve each other. At most
//!   [`TransferLimits::fetches_at_once`] attachments are fetched at once; a fetch beyond them
//!   is declined ([`TransferOutput::Declined`]), so descriptions nobody can serve (an empty
//!   file with a made-up root costs nothing to describe) cannot grow the engine.
//! - **Verification**: a chunk is stored only when its proof leads to the root; a peer that
//!   sends one that does not, or chunks of attachments nobody here fetches faster than
//!   [`TransferLimits::unasked_chunks_per_peer`] a minute, is disconnected. A late answer to a
//!   request asked again elsewhere, or to a cancelled fetch, is dropped without blame.
//! - **Memory**: the engine holds a few bits per chunk and the requests in flight, never the
//!   bytes: a verified chunk goes straight out to the store, so a 1 GiB file never sits in
//!   memory.
//! - **Spreading** (push by announcement): a member that completes an attachment, or posts
//!   one ([`TransferInput::Holding`]), tells every linked peer with `chunk_have`; a peer
//!   fetching it forgets which chunks that member lacked and asks it (but not sooner than a
//!   peer left alone for failing is asked again: `chunk_have` is no way to reset that). Members
//!   fetch the small
//!   attachments of the messages they receive at once (the drivers' rule), so a photo spreads
//!   hop by hop through the links, and a member that holds it already simply does not ask: no
//!   byte moves twice to anyone.
//! - **Resuming**: chunks already stored (after a reload, say) are handed in with
//!   [`TransferInput::Fetch`] and never asked for again.
//! - **Serving**: the engine knows what this member holds (whole attachments from
//!   [`TransferInput::Holding`] and completed fetches, until [`TransferInput::Dropped`]; chunks
//!   of fetches in progress), so a request for anything else is answered `chunk_missing` at
//!   once, without a read. A peer may have [`TransferLimits::serving_per_peer`] chunks being
//!   read for it at once, [`TransferLimits::serving_at_once`] for all peers together, and is
//!   served at most [`TransferLimits::chunks_per_second_per_peer`]; a chunk served to a peer is
//!   not served to it again within [`TransferLimits::request_timeout_millis`]. Requests beyond
//!   these are ignored (the asker's time-outs ask elsewhere), so a peer that asks for the same
//!   chunk in a loop costs next to nothing. The driver answers every
//!   [`TransferOutput::ReadChunk`].

use crate::budget::Budget;
use crate::chunk_tree::{chunk_count, verify_chunk, Hash};
use crate::limits::MAX_ATTACHMENT_BYTES;
use crate::message::Attachment;
use crate::sync::PeerId;
use crate::time::UnixMillis;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod automatic;
mod frame;
mod ordered_digest;
mod room;

pub use automatic::AutomaticFetches;
pub use frame::{ChunkFrame, ChunkFrameError, MAX_CHUNK_WANT};
pub use ordered_digest::OrderedDigests;
pub use room::{Room, RoomFull};
/// Attachments remembered as recently fetched or cancelled, whose late chunks are no offence.
const RECENT_KEYS: usize = 64;
/// Chunks remembered per peer as served to it lately, which it is not served again so soon.
const RECENTLY_SERVED: usize = 64;

/// The engine's tunables; [`TransferLimits::default`] is what clients use.
#[derive(Debug, Clone)]
pub struct TransferLimits {
    /// Chunks asked of one peer over a data channel and not answered yet (32 × 32 KiB in
    /// flight: a store's read takes milliseconds, so a smaller window leaves the channel idle).
    pub chunks_in_flight_per_peer: usize,
    /// The same through the relay, whose quota paces it anyway.
    pub chunks_in_flight_relayed: usize,
    pub request_timeout_millis: u64,
    pub failures_before_giving_up: u32,
    pub give_up_millis: u64,
    /// Attachments fetched at once; more are declined.
    pub fetches_at_once: usize,
    /// Chunks of attachments nobody here fetches that a peer may send in a minute (and at
    /// once) before it is disconnected.
    pub unasked_chunks_per_peer: u32,
    /// Chunks being read from the store for one peer at once, and for all together.
    pub serving_per_peer: usize,
    pub serving_at_once: usize,
    /// Chunks served to one peer per second, and the burst above it.
    pub chunks_per_second_per_peer: f64,
    pub chunk_burst_per_peer: f64,
}

impl Default for TransferLimits {
    fn default() -> Self {
        Self {
            chunks_in_flight_per_peer: 32,
            chunks_in_flight_relayed: 8,
            request_timeout_millis: 4_000,
            failures_before_giving_up: 3,
            give_up_millis: 30_000,
            fetches_at_once: 64,
            unasked_chunks_per_peer: 64,
            serving_per_peer: 32,
            serving_at_once: 128,
            // 60 MiB/s: above what a data channel carries here, so only a greedy peer meets it.
            chunks_per_second_per_peer: 1_920.0,
            chunk_burst_per_peer: 3_840.0,
        }
    }
}

/// A chunk's data and its proof, as stored and served.
pub type ChunkWithProof = (Vec<u8>, Vec<Hash>);

/// An attachment as the transfer names it: its chunk tree root and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentKey {
    pub root: Hash,
    pub size: u64,
}

impl AttachmentKey {
    /// The key of an attachment as a message describes it.
    pub fn of(attachment: &Attachment) -> Self {
        Self {
            root: attachment.root.0,
            size: attachment.size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferInput {
    /// Fetch the attachment `key`, of which the chunks `held` are already stored (none for a
    /// new fetch). Fetching one already being fetched changes nothing.
    Fetch {
        key: AttachmentKey,
        held: Vec<u64>,
    },
    Cancel {
        key: AttachmentKey,
    },
    /// This member holds all of `key` (it posted it, or held it when it started): it is served,
    /// and with `announce` every linked peer is told, so those fetching it ask this member too.
    Holding {
        key: AttachmentKey,
        announce: bool,
    },
    /// The store no longer holds `key` (evicted, or its upload cancelled): it is not served.
    Dropped {
        key: AttachmentKey,
    },
    /// A peer linked, over a data channel or (`relayed`) through the relay.
    PeerUp {
        peer: PeerId,
        relayed: bool,
    },
    PeerDown {
        peer: PeerId,
    },
    Frame {
        peer: PeerId,
        frame: ChunkFrame,
    },
    /// The chunk read for a [`TransferOutput::ReadChunk`], with the proof stored beside it, or
    /// `None` when the store does not hold it (or could not read it).
    ChunkRead {
        peer: PeerId,
        key: AttachmentKey,
        index: u64,
        chunk: Option<ChunkWithProof>,
    },
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutput {
    Send {
        peer: PeerId,
        frame: ChunkFrame,
    },
    /// Read chunk `index` of `key` and its proof, and hand them back as
    /// [`TransferInput::ChunkRead`] (always, with `None` when it cannot).
    ReadChunk {
        peer: PeerId,
        key: AttachmentKey,
        index: u64,
    },
    /// Store this verified chunk with its proof (which serves it to others later).
    StoreChunk {
        key: AttachmentKey,
        index: u64,
        data: Vec<u8>,
        proof: Vec<Hash>,
        from: PeerId,
    },
    /// Every chunk of `key` is stored.
    Complete {
        key: AttachmentKey,
    },
    /// Chunks of `key` are missing and no linked peer is left to ask: fetching resumes when a
    /// peer comes, or when one left alone may be asked again.
    Unavailable {
        key: AttachmentKey,
    },
    /// `key` is not fetched: [`TransferLimits::fetches_at_once`] are being fetched already.
    Declined {
        key: AttachmentKey,
    },
    Disconnect {
        peer: PeerId,
        reason: String,
    },
}

/// One bit per chunk.
#[derive(Debug, Clone, Default)]
struct ChunkSet(Vec<u64>);

impl ChunkSet {
    fn contains(&self, index: u64) -> bool {
        self.0
            .get((index / 64) as usize)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    /// Adds `index` (below `count`); false when it was there already.
    fn insert(&mut self, index: u64, count: u64) -> bool {
        if index >= count {
            return false;
        }
        let word = (index / 64) as usize;
        if self.0.len() <= word {
            self.0.resize(count.div_ceil(64) as usize, 0);
        }
        let bit = 1 << (index % 64);
        let added = self.0[word] & bit == 0;
        self.0[word] |= bit;
        added
    }
}

/// What is known of one peer for one attachment being fetched.
#[derive(Debug, Default)]
struct Source {
    /// Chunks it said it lacks.
    lacks: ChunkSet,
    /// Chunks whose request to it expired: asked of others first.
    timed_out: ChunkSet,
    /// Expiry rounds in a row in which a request to it expired.
    failed_rounds: u32,
    /// Not asked until then.
    left_alone_until: Option<UnixMillis>,
}

/// One attachment being fetched.
#[derive(Debug)]
struct Fetching {
    count: u64,
    held: ChunkSet,
    held_count: u64,
    /// Chunk → who was asked and until when.
    in_flight: BTreeMap<u64, (PeerId, UnixMillis)>,
    /// No chunk below this is missing.
    lowest_missing: u64,
    sources: BTreeMap<PeerId, Source>,
    said_unavailable: bool,
}

impl Fetching {
    fn new(size: u64) -> Self {
        Self {
            count: chunk_count(size),
            held: ChunkSet::default(),
            held_count: 0,
            in_flight: BTreeMap::new(),
            lowest_missing: 0,
            sources: BTreeMap::new(),
            said_unavailable: false,
        }
    }

    fn hold(&mut self, index: u64) {
        if self.held.insert(index, self.count) {
            self.held_count += 1;
        }
        while self.lowest_missing < self.count && self.held.contains(self.lowest_missing) {
            self.lowest_missing += 1;
        }
    }

    fn is_complete(&self) -> bool {
        self.held_count == self.count
    }

    fn may_ask(&self, peer: PeerId, now: UnixMillis) -> bool {
        self.sources
            .get(&peer)
            .and_then(|source| source.left_alone_until)
            .is_none_or(|until| until <= now)
    }

    /// Up to `limit` chunks nobody holds or was asked for and `peer` is not known to lack,
    /// nor failed to send, lowest first.
    fn next_for(&self, peer: PeerId, limit: usize) -> Vec<u64> {
        let source = self.sources.get(&peer);
        (self.lowest_missing..self.count)
            .filter(|index| !self.held.contains(*index) && !self.in_flight.contains_key(index))
            .filter(|index| {
                source.is_none_or(|source| {
                    !source.lacks.contains(*index) && !source.timed_out.contains(*index)
                })
            })
            .take(limit)
            .collect()
    }

    /// Every peer may be asked again for the chunks whose requests to it expired: used when
    /// nobody else is left to ask for them.
    fn forgive_time_outs(&mut self) -> bool {
        let mut forgave = false;
        for source in self.sources.values_mut() {
            forgave |= source.timed_out.0.iter().any(|word| *word != 0);
            source.timed_out = ChunkSet::default();
        }
        forgave
    }
}

#[derive(Debug)]
struct PeerState {
    /// Chunks it may be asked for at once.
    window: usize,
    in_flight: usize,
    unasked_chunks: Budget,
    serving: usize,
    served: Budget,
    /// Chunks served lately, and when, oldest first.
    recently_served: VecDeque<(AttachmentKey, u64, UnixMillis)>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct TransferEngine {
    limits: TransferLimits,
    fetching: BTreeMap<AttachmentKey, Fetching>,
    /// Recently completed or cancelled, newest last.
    recent: VecDeque<AttachmentKey>,
    /// Attachments this member holds whole.
    held: BTreeSet<AttachmentKey>,
    peers: BTreeMap<PeerId, PeerState>,
    /// Chunks being read for all peers.
    serving: usize,
    outputs: VecDeque<TransferOutput>,
}

impl TransferEngine {
    pub fn new(limits: TransferLimits) -> Self {
        Self {
            limits,
            fetching: BTreeMap::new(),
            recent: VecDeque::new(),
            held: BTreeSet::new(),
            peers: BTreeMap::new(),
            serving: 0,
            outputs: VecDeque::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<TransferOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        let requests = self
            .fetching
            .values()
            .flat_map(|fetching| fetching.in_flight.values().map(|(_, deadline)| *deadline));
        let returns = self.fetching.values().flat_map(|fetching| {
            fetching
                .sources
                .values()
                .filter_map(|source| source.left_alone_until)
        });
        requests.chain(returns).min()
    }

    /// Chunks of `key` stored so far, and in all; `None` when it is not being fetched.
    pub fn progress(&self, key: &AttachmentKey) -> Option<(u64, u64)> {
        self.fetching
            .get(key)
            .map(|fetching| (fetching.held_count, fetching.count))
    }

    pub fn handle(&mut self, now: UnixMillis, input: TransferInput) {
        match input {
            TransferInput::Fetch { key, held } => self.fetch(key, held),
            TransferInput::Cancel { key } => self.finish(key),
            TransferInput::Holding { key, announce } => {
                self.held.insert(key);
                if announce {
                    self.announce(key);
                }
            }
            TransferInput::Dropped { key } => {
                self.held.remove(&key);
            }
            TransferInput::PeerUp { peer, relayed } => self.peer_up(now, peer, relayed),
            TransferInput::PeerDown { peer } => self.forget_peer(peer),
            TransferInput::Frame { peer, frame } => self.on_frame(now, peer, frame),
            TransferInput::ChunkRead {
                peer,
                key,
                index,
                chunk,
            } => self.on_chunk_read(peer, key, index, chunk),
            TransferInput::Timeout => self.on_timeout(now),
        }
        self.request_chunks(now);
    }

    fn fetch(&mut self, key: AttachmentKey, held: Vec<u64>) {
        if key.size > MAX_ATTACHMENT_BYTES || self.fetching.contains_key(&key) {
            return;
        }
        if self.fetching.len() >= self.limits.fetches_at_once {
            return self.outputs.push_back(TransferOutput::Declined { key });
        }
        let mut fetching = Fetching::new(key.size);
        for index in held {
            fetching.hold(index);
        }
        self.fetching.insert(key, fetching);
        self.finish_if_complete(key);
    }

    /// Stops fetching `key`; its requests are released and their late answers dropped.
    fn finish(&mut self, key: AttachmentKey) {
        let Some(fetching) = self.fetching.remove(&key) else {
            return;
        };
        for (peer, _) in fetching.in_flight.values() {
            if let Some(state) = self.peers.get_mut(peer) {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
        }
        self.recent.push_back(key);
        if self.recent.len() > RECENT_KEYS {
            self.recent.pop_front();
        }
    }

    fn peer_up(&mut self, now: UnixMillis, peer: PeerId, relayed: bool) {
        let served = Budget::full(
            self.limits.chunk_burst_per_peer,
            self.limits.chunks_per_second_per_peer,
            now,
        );
        let unasked = f64::from(self.limits.unasked_chunks_per_peer);
        let window = if relayed {
            self.limits.chunks_in_flight_relayed
        } else {
            self.limits.chunks_in_flight_per_peer
        };
        self.peers.entry(peer).or_insert(PeerState {
            window,
            in_flight: 0,
            unasked_chunks: Budget::full(unasked, unasked / 60.0, now),
            serving: 0,
            served,
            recently_served: VecDeque::new(),
        });
        for fetching in self.fetching.values_mut() {
            fetching.said_unavailable = false;
        }
    }

    fn forget_peer(&mut self, peer: PeerId) {
        if let Some(state) = self.peers.remove(&peer) {
            self.serving = self.serving.saturating_sub(state.serving);
        }
        for fetching in self.fetching.values_mut() {
            fetching.in_flight.retain(|_, (asked, _)| *asked != peer);
            fetching.sources.remove(&peer);
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
            ChunkFrame::Want { key, chunks } => self.on_want(now, peer, key, chunks),
            ChunkFrame::Chunk {
                key,
                index,
                proof,
                data,
            } => self.on_chunk(now, peer, key, index, proof, data),
            ChunkFrame::Missing { key, chunks } => self.on_missing(peer, key, &chunks),
            ChunkFrame::Have { key } => self.on_have(peer, key),
        }
    }

    fn on_want(&mut self, now: UnixMillis, peer: PeerId, key: AttachmentKey, chunks: Vec<u64>) {
        if chunks.len() > MAX_CHUNK_WANT {
            return self.disconnect(peer, format!("a chunk_want of {} chunks", chunks.len()));
        }
        let (not_held, held): (Vec<u64>, Vec<u64>) = chunks
            .into_iter()
            .partition(|index| !self.holds(key, *index));
        if !not_held.is_empty() {
            let frame = ChunkFrame::Missing {
                key,
                chunks: not_held,
            };
            self.outputs.push_back(TransferOutput::Send { peer, frame });
        }
        let limits = &self.limits;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let since = UnixMillis(now.0.saturating_sub(limits.request_timeout_millis));
        while state
            .recently_served
            .front()
            .is_some_and(|(_, _, at)| *at < since)
        {
            state.recently_served.pop_front();
        }
        for index in held {
            if state
                .recently_served
                .iter()
                .any(|(served_key, served, _)| *served_key == key && *served == index)
            {
                continue;
            }
            if state.serving >= limits.serving_per_peer
                || self.serving >= limits.serving_at_once
                || !state.served.try_spend(now, 1.0)
            {
                // Ignored: the peer's time-out asks again, here or elsewhere.
                return;
            }
            if state.recently_served.len() >= RECENTLY_SERVED {
                state.recently_served.pop_front();
            }
            state.recently_served.push_back((key, index, now));
            state.serving += 1;
            self.serving += 1;
            self.outputs
                .push_back(TransferOutput::ReadChunk { peer, key, index });
        }
    }

    /// Whether this member holds chunk `index` of `key`, as far as the engine knows.
    fn holds(&self, key: AttachmentKey, index: u64) -> bool {
        if self.held.contains(&key) {
            return index < chunk_count(key.size);
        }
        self.fetching
            .get(&key)
            .is_some_and(|fetching| fetching.held.contains(index))
    }

    fn on_chunk_read(
        &mut self,
        peer: PeerId,
        key: AttachmentKey,
        index: u64,
        chunk: Option<ChunkWithProof>,
    ) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.serving = state.serving.saturating_sub(1);
        self.serving = self.serving.saturating_sub(1);
        let frame = match chunk {
            Some((data, proof)) => ChunkFrame::Chunk {
                key,
                index,
                proof,
                data,
            },
            None => ChunkFrame::Missing {
                key,
                chunks: vec![index],
            },
        };
        self.outputs.push_back(TransferOutput::Send { peer, frame });
    }

    fn on_chunk(
        &mut self,
        now: UnixMillis,
        peer: PeerId,
        key: AttachmentKey,
        index: u64,
        proof: Vec<Hash>,
        data: Vec<u8>,
    ) {
        let Some(fetching) = self.fetching.get_mut(&key) else {
            if !self.recent.contains(&key) {
                self.note_unasked(now, peer);
            }
            return;
        };
        if index >= fetching.count || fetching.held.contains(index) {
            // A late answer to a request asked again elsewhere: no offence, no use.
            return;
        }
        if !verify_chunk(&key.root, key.size, index, &data, &proof) {
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
        if let Some(source) = fetching.sources.get_mut(&peer) {
            source.failed_rounds = 0;
        }
        fetching.hold(index);
        self.outputs.push_back(TransferOutput::StoreChunk {
            key,
            index,
            data,
            proof,
            from: peer,
        });
        self.finish_if_complete(key);
    }

    fn note_unasked(&mut self, now: UnixMillis, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if !state.unasked_chunks.try_spend(now, 1.0) {
            self.disconnect(
                peer,
                "too many chunks of attachments nobody asked for".into(),
            );
        }
    }

    fn on_missing(&mut self, peer: PeerId, key: AttachmentKey, chunks: &[u64]) {
        let Some(fetching) = self.fetching.get_mut(&key) else {
            return;
        };
        let count = fetching.count;
        let source = fetching.sources.entry(peer).or_default();
        let mut released = 0;
        for index in chunks {
            source.lacks.insert(*index, count);
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

    /// `peer` holds all of `key` now: what it lacked before is forgotten (what it failed to
    /// send is not: a peer left alone stays alone until its time is up).
    fn on_have(&mut self, peer: PeerId, key: AttachmentKey) {
        if let Some(fetching) = self.fetching.get_mut(&key) {
            if let Some(source) = fetching.sources.get_mut(&peer) {
                source.lacks = ChunkSet::default();
            }
            fetching.said_unavailable = false;
        }
    }

    /// Tells every linked peer that this member holds all of `key`.
    fn announce(&mut self, key: AttachmentKey) {
        for peer in self.peers.keys() {
            self.outputs.push_back(TransferOutput::Send {
                peer: *peer,
                frame: ChunkFrame::Have { key },
            });
        }
    }

    fn on_timeout(&mut self, now: UnixMillis) {
        let give_up_after = self.limits.failures_before_giving_up;
        let left_alone_until = now.saturating_add_millis(self.limits.give_up_millis);
        for fetching in self.fetching.values_mut() {
            let expired: Vec<(u64, PeerId)> = fetching
                .in_flight
                .iter()
                .filter(|(_, (_, deadline))| *deadline <= now)
                .map(|(index, (peer, _))| (*index, *peer))
                .collect();
            let mut failed = BTreeSet::new();
            let count = fetching.count;
            for (index, peer) in expired {
                fetching.in_flight.remove(&index);
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.in_flight = state.in_flight.saturating_sub(1);
                }
                fetching
                    .sources
                    .entry(peer)
                    .or_default()
                    .timed_out
                    .insert(index, count);
                failed.insert(peer);
            }
            for peer in failed {
                let source = fetching.sources.entry(peer).or_default();
                source.failed_rounds += 1;
                if source.failed_rounds >= give_up_after {
                    source.failed_rounds = 0;
                    source.left_alone_until = Some(left_alone_until);
                }
            }
            for source in fetching.sources.values_mut() {
                if source.left_alone_until.is_some_and(|until| until <= now) {
                    source.left_alone_until = None;
                    fetching.said_unavailable = false;
                }
            }
        }
    }

    fn finish_if_complete(&mut self, key: AttachmentKey) {
        if self.fetching.get(&key).is_some_and(Fetching::is_complete) {
            self.finish(key);
            self.held.insert(key);
            self.outputs.push_back(TransferOutput::Complete { key });
            self.announce(key);
        }
    }

    /// Fills every peer's room with the lowest chunks nobody holds or was asked for.
    fn request_chunks(&mut self, now: UnixMillis) {
        let deadline = now.saturating_add_millis(self.limits.request_timeout_millis);
        for (key, fetching) in &mut self.fetching {
            let mut someone_holds_more = ask_peers(
                *key,
                fetching,
                &mut self.peers,
                &mut self.outputs,
                (now, deadline),
            );
            let mut stalled = fetching.in_flight.is_empty() && !someone_holds_more;
            if stalled && fetching.forgive_time_outs() {
                // Nobody else is left: those that timed out are asked again.
                someone_holds_more = ask_peers(
                    *key,
                    fetching,
                    &mut self.peers,
                    &mut self.outputs,
                    (now, deadline),
                );
                stalled = fetching.in_flight.is_empty() && !someone_holds_more;
            }
            if stalled && !fetching.said_unavailable {
                fetching.said_unavailable = true;
                self.outputs
                    .push_back(TransferOutput::Unavailable { key: *key });
            }
        }
    }
}

/// Asks each peer that may be asked for the lowest chunks of `key` it may have, within its room;
/// true when some peer could be asked for more than its room took.
fn ask_peers(
    key: AttachmentKey,
    fetching: &mut Fetching,
    peers: &mut BTreeMap<PeerId, PeerState>,
    outputs: &mut VecDeque<TransferOutput>,
    (now, deadline): (UnixMillis, UnixMillis),
) -> bool {
    let mut someone_holds_more = false;
    for (peer, state) in peers {
        if !fetching.may_ask(*peer, now) {
            continue;
        }
        someone_holds_more |= !fetching.next_for(*peer, 1).is_empty();
        if state.in_flight >= state.window {
            continue;
        }
        let chunks = fetching.next_for(*peer, (state.window - state.in_flight).min(MAX_CHUNK_WANT));
        if chunks.is_empty() {
            continue;
        }
        for index in &chunks {
            fetching.in_flight.insert(*index, (*peer, deadline));
        }
        state.in_flight += chunks.len();
        outputs.push_back(TransferOutput::Send {
            peer: *peer,
            frame: ChunkFrame::Want { key, chunks },
        });
    }
    someone_holds_more
}
