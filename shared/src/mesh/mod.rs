//! The member's peer links and the history sync over them, sans-IO: which members to open a
//! WebRTC data channel to, the signalling through the relay, falling back to frames forwarded
//! by the relay when a data channel cannot be opened, and the [`SyncEngine`] on top.
//!
//! - **Who links to whom**: on joining a channel, a member offers a data channel to up to
//!   [`MAX_OFFERED_LINKS`] random members that were already there; members who arrive later
//!   offer to it. The relay handles joins one at a time, so of two members exactly one lists the
//!   other and offers: no two offers cross. A member holds at most [`MAX_LINKS`] links and
//!   answers further offers with `busy`, so big channels are a sparse mesh, not a full one.
//!   With every place taken, it replaces the link that brought nothing new for longest
//!   ([`LINK_ROTATION_MILLIS`]), so links that bring nothing cannot cut it off.
//! - **Signalling**: one offer and one answer per link, each with all its ICE candidates
//!   (gathering finishes before the description is sent), in `signal` frames.
//! - **Fallback**: a link whose data channel is not open [`LINK_OPEN_TIMEOUT_MILLIS`] after it
//!   began, or fails before opening, carries the same peer frames through the relay (`peer`
//!   frames), paced to the relay's per-member byte quota. So does, at once, a link whose local
//!   or remote description holds no ICE candidate (nothing could ever connect); the description
//!   is signalled all the same, so both sides hold the link. A forwarded frame from a member
//!   this side holds no link with is ignored: nobody takes a link place unasked.
//! - **History state**: the engine's, except that a channel whose engine has no peer yet while
//!   links to members there are being made is [`HistoryState::Connecting`].
//! - **Peers of last resort**: the operator's virtual clients (role `virtual`) are offered links
//!   after members, and a member holds at most [`MAX_ARCHIVE_LINKS`] links to them, so they never
//!   take the places of members; the engine asks them only for what no member serves in time.
//! - **Trust**: a peer the sync engine drops (a forged or altered envelope, a broken rule) has
//!   its key refused for the rest of the session, whatever session it comes back as.
//! - **Attachments**: the [`TransferEngine`] beside the sync engine moves chunks over the same
//!   links, as binary frames. History comes first: through the relay, chunk frames leave
//!   [`RELAY_RESERVE_FOR_HISTORY`] of the quota to history frames; on a data channel the driver
//!   sends a chunk frame only while less than [`crate::node::LINK_CHUNK_QUEUE_BYTES`] wait.
//! - Links belong to one relay connection: when it is lost they are all closed, and made again
//!   after the next login.
//!
//! Who links with whom is in `links.rs`, the offer/answer exchange in `signalling.rs`, how frames
//! travel (data channel or relay) and reach the engines in `transport.rs`.

use crate::budget::Budget;
use crate::channel::ChannelName;
use crate::chunk_tree::Hash;
use crate::client::{ChannelPeer, ClientInput, PeerNews};
use crate::frames::{IceServer, SessionId};
use crate::identity::{PublicKey, Verifier};
use crate::ids::MessageId;
use crate::limits::{RELAYED_PEER_BURST_BYTES, RELAYED_PEER_BYTES_PER_SECOND};
use crate::membership::Role;
use crate::message::{Envelope, VerifiedEnvelope};
use crate::random::SeededRandom;
use crate::sync::{HistoryState, PeerId, SyncEngine, SyncInput, SyncLimits};
use crate::time::UnixMillis;
use crate::transfer::{AttachmentKey, TransferEngine, TransferInput, TransferLimits};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

mod links;
mod signalling;
mod transport;

/// Links this member offers (to members who were in a channel before it).
pub const MAX_OFFERED_LINKS: usize = 4;
/// Links in all, offered and accepted; further offers are answered `busy`.
pub const MAX_LINKS: usize = 8;
/// Links a member holds to archive peers (virtual clients); a virtual client has no such cap.
pub const MAX_ARCHIVE_LINKS: usize = 2;
/// A data channel not open this long after its link began gives way to the relay path.
pub const LINK_OPEN_TIMEOUT_MILLIS: u64 = 10_000;
/// A member holding all [`MAX_LINKS`] places replaces, this often, the link that has brought no
/// new message for longest (at least this long) with one to a member it holds none with: links
/// that bring nothing cannot keep a member from the rest of its channels.
pub const LINK_ROTATION_MILLIS: u64 = 60_000;
/// How long a member whose link was replaced is not linked with again.
pub const ROTATED_OUT_MILLIS: u64 = 10 * 60_000;
/// Of the relay's quota for forwarded frames, what chunk frames leave to history frames.
pub const RELAY_RESERVE_FOR_HISTORY: usize = 512 * 1024;
/// Keys refused for the session after misbehaving, oldest forgotten first.
pub const MAX_REFUSED_KEYS: usize = 256;

/// The `data` of a `signal` frame between two members, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignalPayload {
    /// An SDP offer with every ICE candidate gathered; the offerer made the data channel.
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    /// The member already holds [`MAX_LINKS`] links: ask someone else.
    Busy,
    /// This side cannot make a data channel for the link (it failed before or while
    /// describing it): carry its peer frames through the relay.
    Relay,
}

/// How a link's peer frames travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    DataChannel,
    Relay,
}

/// What a driver's WebRTC link reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The local description, ICE candidates included, is ready to be signalled.
    Description(String),
    Open,
    /// The connection failed or the data channel closed.
    Down,
    Frame(String),
    /// A binary message: a chunk frame.
    Binary(Vec<u8>),
}

impl LinkEvent {
    /// The mesh's input for this event on the link to `session`.
    pub fn into_input(self, session: SessionId) -> MeshInput {
        match self {
            Self::Description(sdp) => MeshInput::LocalDescription { session, sdp },
            Self::Open => MeshInput::LinkOpen { session },
            Self::Down => MeshInput::LinkDown { session },
            Self::Frame(text) => MeshInput::DataChannelFrame { session, text },
            Self::Binary(bytes) => MeshInput::DataChannelBinary { session, bytes },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshInput {
    /// Everything peer-related the relay session reports.
    Relay(PeerNews),
    /// The ids the store holds for `channel`, answering [`MeshOutput::ReadIds`].
    Ids {
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    /// The local description for the link to `session` is ready, ICE candidates included.
    LocalDescription {
        session: SessionId,
        sdp: String,
    },
    /// The data channel to `session` opened.
    LinkOpen {
        session: SessionId,
    },
    /// The peer connection to `session` failed, or its data channel closed.
    LinkDown {
        session: SessionId,
    },
    /// A text message arrived on the data channel from `session`.
    DataChannelFrame {
        session: SessionId,
        text: String,
    },
    /// A binary message arrived on the data channel from `session`.
    DataChannelBinary {
        session: SessionId,
        bytes: Vec<u8>,
    },
    /// Fetch the attachment `key` from peers; the chunks `held` are stored already.
    Fetch {
        key: AttachmentKey,
        held: Vec<u64>,
    },
    /// Stop fetching `key`.
    CancelFetch {
        key: AttachmentKey,
    },
    /// This member holds all of `key`: serve it, and with `announce` tell the links.
    Holding {
        key: AttachmentKey,
        announce: bool,
    },
    /// The store no longer holds `key`.
    Dropped {
        key: AttachmentKey,
    },
    /// The chunk read for a [`MeshOutput::ReadChunk`] with its proof, or `None` when the store
    /// does not hold it.
    ChunkRead {
        peer: PeerId,
        key: AttachmentKey,
        index: u64,
        chunk: Option<crate::transfer::ChunkWithProof>,
    },
    /// The envelopes read for a [`MeshOutput::Load`].
    Loaded {
        peer: PeerId,
        channel: ChannelName,
        envelopes: Vec<Envelope>,
    },
    /// A message the relay delivered and the driver stored.
    Delivered {
        envelope: Box<VerifiedEnvelope>,
    },
    /// The store dropped these ids (a bounded cache evicting old history).
    Evicted {
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshOutput {
    /// Open a peer connection to `session` with one data channel, create an offer, and feed its
    /// local description back once ICE gathering is complete.
    Offer {
        session: SessionId,
        ice_servers: Vec<IceServer>,
    },
    /// Open a peer connection for `session`'s offer, answer it, and feed the local description
    /// back once ICE gathering is complete.
    Answer {
        session: SessionId,
        ice_servers: Vec<IceServer>,
        offer: String,
    },
    /// Apply `session`'s answer to the offer made.
    Accept {
        session: SessionId,
        answer: String,
    },
    /// Close the peer connection to `session`, if there is one, and feed nothing more from it.
    Close {
        session: SessionId,
    },
    /// Hand this to the relay session (signals and forwarded peer frames).
    ToRelay(ClientInput),
    /// Send this text on the data channel to `session`.
    SendOnDataChannel {
        session: SessionId,
        text: String,
    },
    /// Send this chunk frame on the data channel to `session`.
    /// A chunk frame, sent only while less than `queue_limit` bytes wait on the data channel.
    SendBinaryOnDataChannel {
        session: SessionId,
        bytes: Vec<u8>,
        queue_limit: usize,
    },
    /// Read chunk `index` of `key` with its proof for `peer`, and feed them back as
    /// [`MeshInput::ChunkRead`] (always: `None` when it is not held).
    ReadChunk {
        peer: PeerId,
        key: AttachmentKey,
        index: u64,
    },
    /// Store this verified chunk of `key` and its proof; `from` sent it.
    StoreChunk {
        key: AttachmentKey,
        index: u64,
        data: Vec<u8>,
        proof: Vec<Hash>,
        from: PublicKey,
    },
    /// Every chunk of `key` is stored.
    AttachmentComplete {
        key: AttachmentKey,
    },
    /// Chunks of `key` are missing and no linked peer is left to ask; fetching goes on when
    /// one comes.
    AttachmentUnavailable {
        key: AttachmentKey,
    },
    AttachmentDeclined {
        key: AttachmentKey,
    },
    /// Read the ids the store holds for `channel` and feed them back as [`MeshInput::Ids`].
    ReadIds {
        channel: ChannelName,
    },
    /// Read these envelopes and feed them back as [`MeshInput::Loaded`].
    Load {
        peer: PeerId,
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    /// Store these verified envelopes, new to this member, which came over `transport`.
    Store {
        channel: ChannelName,
        envelopes: Vec<VerifiedEnvelope>,
        transport: Transport,
    },
    /// A channel's history state changed.
    State {
        channel: ChannelName,
        state: HistoryState,
    },
    /// The links or the counters changed.
    Stats(MeshStats),
    /// A peer broke the rules (a forged envelope, an unreadable frame): its key is refused for
    /// the session.
    Refused {
        key: PublicKey,
        reason: String,
    },
}

/// Counters for the UI and for tests that must know which path history took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStats {
    pub data_channels_open: usize,
    pub relayed_links: usize,
    pub envelopes_over_data_channel: u64,
    pub envelopes_over_relay: u64,
    /// Of the envelopes above, those an archive peer (virtual client) sent.
    pub envelopes_from_archive_peers: u64,
    /// Forwarded frames not sent because the relay quota was used up (the engine retries).
    pub relayed_frames_held_back: u64,
    /// Links that took the relay path at once because a description held no ICE candidate.
    pub links_without_candidates: u64,
    /// Links that took the relay path because no data channel opened in time.
    pub links_timed_out: u64,
    /// Links replaced for bringing nothing new while every place was taken.
    pub links_rotated: u64,
    /// Verified attachment chunks received, by path, and of those, from archive peers.
    pub chunks_over_data_channel: u64,
    pub chunks_over_relay: u64,
    pub chunks_from_archive_peers: u64,
    /// Chunk frames not sent through the relay, to keep its quota for history.
    pub relayed_chunks_held_back: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Offering { deadline: UnixMillis },
    Answering { deadline: UnixMillis },
    Open,
    Relayed,
}

#[derive(Debug)]
struct Link {
    peer: PeerId,
    key: PublicKey,
    archive: bool,
    offered: bool,
    state: LinkState,
    /// When it began or last brought a message new to this member.
    useful_at: UnixMillis,
}

impl Link {
    fn transport(&self) -> Option<Transport> {
        match self.state {
            LinkState::Open => Some(Transport::DataChannel),
            LinkState::Relayed => Some(Transport::Relay),
            LinkState::Offering { .. } | LinkState::Answering { .. } => None,
        }
    }
}

/// What the relay session said about this member's own login.
#[derive(Debug)]
struct Login {
    session: SessionId,
    me: PublicKey,
    /// This member is itself a virtual client.
    archive: bool,
    ice_servers: Vec<IceServer>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct PeerMesh {
    login: Option<Login>,
    engine: Option<SyncEngine<Verifier>>,
    transfer: TransferEngine,
    random: SeededRandom,
    /// Channels joined, and for each the other sessions there with their keys and roles.
    present: BTreeMap<ChannelName, BTreeMap<SessionId, (PublicKey, Role)>>,
    /// Sessions that were in a channel when this member joined it: the ones it may offer to.
    listed: BTreeSet<SessionId>,
    /// Sessions that answered `busy`.
    declined: HashSet<SessionId>,
    /// Sessions whose link was replaced for bringing nothing, and until when they are not
    /// linked with again (their offers get `busy`).
    rotated_out: HashMap<SessionId, UnixMillis>,
    next_rotation: UnixMillis,
    links: BTreeMap<SessionId, Link>,
    sessions_by_peer: HashMap<PeerId, SessionId>,
    next_peer: PeerId,
    refused_keys: VecDeque<PublicKey>,
    /// Bytes of frames sent through the relay, mirroring its quota for forwarded frames.
    relay_budget: Budget,
    stats: MeshStats,
    outputs: VecDeque<MeshOutput>,
    sync_limits: SyncLimits,
    /// Each joined channel's history state as the engine last reported it, and as shown.
    engine_states: BTreeMap<ChannelName, HistoryState>,
    shown_states: BTreeMap<ChannelName, HistoryState>,
}

impl PeerMesh {
    pub fn new(now: UnixMillis, random_seed: u64) -> Self {
        Self::with_sync_limits(now, random_seed, SyncLimits::default())
    }

    /// A mesh whose engine uses `sync_limits` (a virtual client's horizon, say).
    pub fn with_sync_limits(now: UnixMillis, random_seed: u64, sync_limits: SyncLimits) -> Self {
        Self {
            login: None,
            engine: None,
            transfer: TransferEngine::new(TransferLimits::default()),
            random: SeededRandom::new(random_seed),
            present: BTreeMap::new(),
            listed: BTreeSet::new(),
            declined: HashSet::new(),
            rotated_out: HashMap::new(),
            next_rotation: now.saturating_add_millis(LINK_ROTATION_MILLIS),
            links: BTreeMap::new(),
            sessions_by_peer: HashMap::new(),
            next_peer: 1,
            refused_keys: VecDeque::new(),
            relay_budget: Budget::full(
                RELAYED_PEER_BURST_BYTES as f64,
                RELAYED_PEER_BYTES_PER_SECOND as f64,
                now,
            ),
            stats: MeshStats::default(),
            outputs: VecDeque::new(),
            sync_limits,
            engine_states: BTreeMap::new(),
            shown_states: BTreeMap::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<MeshOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        let negotiating = self.links.values().filter_map(|link| match link.state {
            LinkState::Offering { deadline } | LinkState::Answering { deadline } => Some(deadline),
            LinkState::Open | LinkState::Relayed => None,
        });
        let rotation = (self.links.len() >= MAX_LINKS).then_some(self.next_rotation);
        negotiating
            .chain(rotation)
            .chain(self.engine.as_ref().and_then(SyncEngine::poll_timeout))
            .chain(self.transfer.poll_timeout())
            .min()
    }

    pub fn stats(&self) -> MeshStats {
        self.stats
    }

    pub fn handle(&mut self, now: UnixMillis, input: MeshInput) {
        let before = self.stats;
        match input {
            MeshInput::Relay(news) => self.on_news(now, news),
            MeshInput::Ids { channel, ids } => {
                if self.present.contains_key(&channel) {
                    self.sync(now, SyncInput::Join { channel, ids });
                }
            }
            MeshInput::LocalDescription { session, sdp } => {
                self.on_local_description(now, session, sdp)
            }
            MeshInput::LinkOpen { session } => self.on_link_open(now, session),
            MeshInput::LinkDown { session } => self.on_link_down(now, session),
            MeshInput::DataChannelFrame { session, text } => {
                self.on_data_channel_frame(now, session, &text)
            }
            MeshInput::DataChannelBinary { session, bytes } => {
                self.on_data_channel_binary(now, session, &bytes)
            }
            MeshInput::Fetch { key, held } => {
                self.transfer_input(now, TransferInput::Fetch { key, held })
            }
            MeshInput::CancelFetch { key } => {
                self.transfer_input(now, TransferInput::Cancel { key })
            }
            MeshInput::Holding { key, announce } => {
                self.transfer_input(now, TransferInput::Holding { key, announce })
            }
            MeshInput::Dropped { key } => self.transfer_input(now, TransferInput::Dropped { key }),
            MeshInput::ChunkRead {
                peer,
                key,
                index,
                chunk,
            } => self.transfer_input(
                now,
                TransferInput::ChunkRead {
                    peer,
                    key,
                    index,
                    chunk,
                },
            ),
            MeshInput::Loaded {
                peer,
                channel,
                envelopes,
            } => self.sync(
                now,
                SyncInput::Loaded {
                    peer,
                    channel,
                    envelopes,
                },
            ),
            MeshInput::Evicted { channel, ids } => {
                self.sync(now, SyncInput::Forget { channel, ids })
            }
            MeshInput::Delivered { envelope } => self.sync(
                now,
                SyncInput::Local {
                    envelope,
                    spread: false,
                },
            ),
            MeshInput::Timeout => self.on_timeout(now),
        }
        self.count_links();
        if self.stats != before {
            self.outputs.push_back(MeshOutput::Stats(self.stats));
        }
        self.report_history_states();
    }

    /// Reports each channel's history state where it changed: the engine's, or
    /// [`HistoryState::Connecting`] while the engine has no peer and links are being made.
    fn report_history_states(&mut self) {
        for (channel, engine_state) in &self.engine_states {
            let connecting = self
                .links
                .iter()
                .filter(|(session, link)| {
                    link.transport().is_none()
                        && self
                            .present
                            .get(channel)
                            .is_some_and(|present| present.contains_key(session))
                })
                .count();
            let state = match engine_state {
                HistoryState::NoPeers if connecting > 0 => {
                    HistoryState::Connecting { peers: connecting }
                }
                other => *other,
            };
            if self.shown_states.get(channel) != Some(&state) {
                self.shown_states.insert(channel.clone(), state);
                self.outputs.push_back(MeshOutput::State {
                    channel: channel.clone(),
                    state,
                });
            }
        }
    }

    fn on_news(&mut self, now: UnixMillis, news: PeerNews) {
        match news {
            PeerNews::Online {
                session,
                me,
                role,
                relay,
                ice_servers,
                relay_time,
            } => {
                if self.engine.is_none() {
                    if let Ok(verifier) = relay.verifier() {
                        let seed = self.random.next_u64();
                        let limits = self.sync_limits.clone();
                        self.engine = Some(SyncEngine::new(verifier, limits, seed));
                    }
                }
                if let Some(engine) = &mut self.engine {
                    engine.handle(now, SyncInput::RelayClock { relay_time });
                }
                self.login = Some(Login {
                    session,
                    me,
                    archive: role == Role::Virtual,
                    ice_servers,
                });
            }
            PeerNews::Offline => self.on_offline(now),
            PeerNews::Listed { channel, members } => self.on_listed(now, channel, members),
            PeerNews::Arrived { channel, member } => {
                if self.is_other_member(&member.address) {
                    if let Some(present) = self.present.get_mut(&channel) {
                        let session = member.address.session;
                        present.insert(session, (member.address.key, member.role));
                        self.share_channel(now, session, &channel);
                    }
                }
            }
            PeerNews::Departed { channel, session } => {
                if let Some(present) = self.present.get_mut(&channel) {
                    present.remove(&session);
                }
                self.drop_if_unshared(now, session);
            }
            PeerNews::Left { channel } => {
                let sessions: Vec<SessionId> = self
                    .present
                    .remove(&channel)
                    .map(|present| present.into_keys().collect())
                    .unwrap_or_default();
                self.sync(
                    now,
                    SyncInput::Leave {
                        channel: channel.clone(),
                    },
                );
                self.engine_states.remove(&channel);
                self.shown_states.remove(&channel);
                for session in sessions {
                    self.drop_if_unshared(now, session);
                }
            }
            PeerNews::Signal { from, data } => self.on_signal(now, from, &data),
            PeerNews::PeerFrame { from, frame } => self.on_forwarded_frame(now, from, &frame),
        }
    }

    fn on_offline(&mut self, now: UnixMillis) {
        let sessions: Vec<SessionId> = self.links.keys().copied().collect();
        for session in sessions {
            self.remove_link(now, session);
        }
        self.login = None;
        self.present.clear();
        self.listed.clear();
        self.declined.clear();
        self.rotated_out.clear();
    }

    fn on_listed(&mut self, now: UnixMillis, channel: ChannelName, members: Vec<ChannelPeer>) {
        if self.login.is_none() {
            return;
        }
        if !self.present.contains_key(&channel) {
            self.present.insert(channel.clone(), BTreeMap::new());
            self.outputs.push_back(MeshOutput::ReadIds {
                channel: channel.clone(),
            });
        }
        for ChannelPeer { address, role } in members {
            if !self.is_other_member(&address) {
                continue;
            }
            if let Some(present) = self.present.get_mut(&channel) {
                present.insert(address.session, (address.key, role));
            }
            self.listed.insert(address.session);
            self.share_channel(now, address.session, &channel);
        }
        self.offer_links(now);
    }

    /// Tells the engine that the peer behind `session`, if linked, is in `channel` too.
    fn share_channel(&mut self, now: UnixMillis, session: SessionId, channel: &ChannelName) {
        let Some(link) = self.links.get(&session) else {
            return;
        };
        if link.transport().is_some() {
            let (peer, archive) = (link.peer, link.archive);
            self.sync(
                now,
                SyncInput::PeerUp {
                    peer,
                    channels: vec![channel.clone()],
                    archive,
                },
            );
        }
    }

    /// The channels this member shares with `session`.
    fn shared_channels(&self, session: SessionId) -> Vec<ChannelName> {
        self.present
            .iter()
            .filter(|(_, present)| present.contains_key(&session))
            .map(|(channel, _)| channel.clone())
            .collect()
    }

    fn key_of(&self, session: SessionId) -> Option<PublicKey> {
        self.presence_of(session).map(|(key, _)| key)
    }

    fn presence_of(&self, session: SessionId) -> Option<(PublicKey, Role)> {
        self.present
            .values()
            .find_map(|present| present.get(&session).copied())
    }

    fn is_archive(&self, session: SessionId) -> bool {
        self.presence_of(session)
            .is_some_and(|(_, role)| role == Role::Virtual)
    }

    fn is_refused(&self, key: &PublicKey) -> bool {
        self.refused_keys.contains(key)
    }

    fn drop_if_unshared(&mut self, now: UnixMillis, session: SessionId) {
        if self.shared_channels(session).is_empty() {
            self.listed.remove(&session);
            if self.links.contains_key(&session) {
                self.remove_link(now, session);
                self.offer_links(now);
            }
        }
    }

    fn remove_link(&mut self, now: UnixMillis, session: SessionId) {
        let Some(link) = self.links.remove(&session) else {
            return;
        };
        self.sessions_by_peer.remove(&link.peer);
        self.outputs.push_back(MeshOutput::Close { session });
        if link.transport().is_some() {
            self.sync(now, SyncInput::PeerDown { peer: link.peer });
            self.transfer_input(now, TransferInput::PeerDown { peer: link.peer });
        }
    }

    fn on_timeout(&mut self, now: UnixMillis) {
        let overdue: Vec<SessionId> = self
            .links
            .iter()
            .filter(|(_, link)| match link.state {
                LinkState::Offering { deadline } | LinkState::Answering { deadline } => {
                    deadline <= now
                }
                LinkState::Open | LinkState::Relayed => false,
            })
            .map(|(session, _)| *session)
            .collect();
        for session in overdue {
            self.stats.links_timed_out += 1;
            // The other side may never have had the offer (the relay can turn it away).
            self.signal(session, &SignalPayload::Relay);
            self.fall_back_to_relay(now, session);
        }
        self.rotate_links(now);
        self.sync(now, SyncInput::Timeout);
        if self.transfer.poll_timeout().is_some_and(|at| at <= now) {
            self.transfer_input(now, TransferInput::Timeout);
        }
    }

    fn count_links(&mut self) {
        self.stats.data_channels_open = self
            .links
            .values()
            .filter(|link| link.state == LinkState::Open)
            .count();
        self.stats.relayed_links = self
            .links
            .values()
            .filter(|link| link.state == LinkState::Relayed)
            .count();
    }
}
