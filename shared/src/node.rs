//! One member's node, sans-IO: the relay session ([`ClientSession`]) and the peer mesh with its
//! history sync ([`PeerMesh`]) behind one [`Node::handle`], one [`Node::poll_output`] and one
//! [`Node::poll_timeout`]. Both drivers (the browser's and a virtual client's) only do IO: they
//! open sockets and links, store and read history, and show or log events.
//!
//! - **Drain rule**: an input moves the session's outputs at once (the session tells the mesh
//!   what it needs as it goes); the mesh's outputs move when the driver has polled everything
//!   before them: then the session's, the deliveries, then one of the mesh's, until neither has
//!   any. What one part hands the other (peers and signals, forwarded frames, deliveries) never
//!   reaches the driver. The driver carries out the outputs in order; what it feeds while doing
//!   so (what a read returned, a link that failed, a channel to join) queues behind them.
//! - **Deliveries are batched**: messages the relay delivers wait in one
//!   [`NodeOutput::StoreDelivered`] until another kind of output comes or the mesh's turn does,
//!   so a driver that feeds several frames before polling stores them together, and the mesh's
//!   reads of the store come after them. The mesh learns of them when the batch is handed out.
//! - **Numbered sockets and links**: every relay socket and peer link the node asks for carries a
//!   number, and the driver tags what happens on it with that number; events of a socket or link
//!   replaced since are ignored, so a driver keeps no generations of its own.
//! - **Sending on a link** ([`NodeOutput::SendOnLink`]): the driver hands the text to the link's
//!   data channel. A link with no open data channel is reported [`LinkEvent::Down`] (the mesh
//!   closes it and offers another). A frame that would put more than [`LINK_SEND_QUEUE_BYTES`]
//!   in the link's send queue is dropped (the peer is not keeping up); the sync engine's
//!   time-outs ask again for what it carried.
//! - **Chunks give way to history** ([`NodeOutput::SendBinaryOnLink`]): a chunk is sent only
//!   while less than [`LINK_CHUNK_QUEUE_BYTES`] wait on the link, else dropped (the asker's
//!   time-out asks again), so history frames never wait behind more than that. The other chunk
//!   frames (`chunk_want`, `chunk_missing`, `chunk_have`: a few dozen bytes) queue like history.
//! - **Attachments**: the driver asks for one with [`NodeInput::FetchAttachment`], naming the
//!   chunks its store holds already; verified chunks come out as [`NodeOutput::StoreChunk`],
//!   and peers' requests as [`NodeOutput::ReadChunk`], which the driver always answers.

use crate::channel::ChannelName;
use crate::chunk_tree::Hash;
use crate::client::{
    ClientConfig, ClientEvent, ClientInput, ClientOutput, ClientSession, OutboxEntry,
};
use crate::frames::{IceServer, SessionId};
use crate::identity::PublicKey;
use crate::ids::MessageId;
use crate::membership::{DisplayName, MembershipCertificate, Profile};
use crate::mesh::{LinkEvent, MeshInput, MeshOutput, MeshStats, PeerMesh, Transport};
use crate::message::{ClientNonce, Envelope, MessageBody, VerifiedEnvelope};
use crate::sync::{HistoryState, PeerId, SyncLimits};
use crate::time::UnixMillis;
use crate::transfer::AttachmentKey;
use std::collections::{HashMap, VecDeque};

/// The label of a link's one data channel.
pub const DATA_CHANNEL_LABEL: &str = "peerchat";
/// ICE gathering is given this long; the description then goes with the candidates found.
pub const ICE_GATHERING_LIMIT_MILLIS: u64 = 5_000;
/// Bytes that may wait to be sent on one link; a frame beyond it is dropped. What a peer may
/// ask for at once (512 ids in flight) fits when messages are of a usual size.
pub const LINK_SEND_QUEUE_BYTES: usize = 2 * 1024 * 1024;
/// A chunk frame is sent on a link only while less than this waits to be sent on it. A peer
/// asks for at most 32 chunks at once (1.04 MiB with proofs), so an honest one is never refused.
pub const LINK_CHUNK_QUEUE_BYTES: usize = 1280 * 1024;

/// One relay socket the node asked for ([`NodeOutput::OpenSocket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketNumber(pub u64);

/// One peer link the node asked for ([`NodeOutput::OpenLink`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkNumber(pub u64);

/// What a node starts from.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub session: ClientConfig,
    /// Seeds the mesh's choice of peers.
    pub mesh_seed: u64,
    /// A virtual client's horizon, say.
    pub sync_limits: SyncLimits,
}

/// What happened on a relay socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEvent {
    Opened,
    /// A text frame (a binary frame is given as an empty text, which the session refuses).
    Frame(String),
    /// It closed, failed to open, or the driver gave it up (it could not keep up).
    Closed,
}

/// What the member does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberAction {
    /// Sends `body`; `nonce` is 16 fresh random bytes. The store holds every attachment of it
    /// whole (the linked peers are told so at once).
    Send {
        channel: ChannelName,
        body: MessageBody,
        nonce: ClientNonce,
    },
    Join(ChannelName),
    SetDisplayName(DisplayName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeInput {
    Socket {
        socket: SocketNumber,
        event: SocketEvent,
    },
    Member(MemberAction),
    /// Something happened on the link to `session`.
    Link {
        session: SessionId,
        link: LinkNumber,
        event: LinkEvent,
    },
    /// The ids the store holds for `channel`, answering [`NodeOutput::ReadIds`].
    Ids {
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    /// The envelopes read for a [`NodeOutput::Load`].
    Loaded {
        peer: PeerId,
        channel: ChannelName,
        envelopes: Vec<Envelope>,
    },
    /// The store dropped these ids (a bounded cache evicting old history).
    Evicted {
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    /// Fetch attachment `key` from peers; the store holds the chunks `held` already (none for
    /// a new download; some after a reload). Fetching one already being fetched changes
    /// nothing.
    FetchAttachment {
        key: AttachmentKey,
        held: Vec<u64>,
    },
    /// Stop fetching `key` (the member cancelled, or the store cannot take more).
    CancelAttachment {
        key: AttachmentKey,
    },
    /// The store holds these attachments whole (told once the driver has read its store, and
    /// for each upload once stored): peers asking for them are served.
    AttachmentsHeld {
        keys: Vec<AttachmentKey>,
    },
    /// The store dropped `key` (evicted, or an upload cancelled): it is no longer served.
    AttachmentDropped {
        key: AttachmentKey,
    },
    /// The chunk read for a [`NodeOutput::ReadChunk`] with its proof, or `None` when the store
    /// does not hold it (or could not read it).
    ChunkRead {
        peer: PeerId,
        key: AttachmentKey,
        index: u64,
        chunk: Option<crate::transfer::ChunkWithProof>,
    },
    /// The time given by [`Node::poll_timeout`] has come.
    Timeout,
}

impl NodeInput {
    /// The link to `session` numbered `link` failed, or has no open data channel to send on.
    pub fn link_down(session: SessionId, link: LinkNumber) -> Self {
        Self::Link {
            session,
            link,
            event: LinkEvent::Down,
        }
    }
}

/// A message the relay delivered, to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub envelope: VerifiedEnvelope,
    /// The member's own message, confirmed: its outbox entry can go.
    pub acknowledged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutput {
    /// Open a WebSocket to the relay and tag its events with this number.
    OpenSocket(SocketNumber),
    /// Close the relay socket, if one is open; its events are ignored from now on.
    CloseSocket,
    /// Send this text frame on the relay socket.
    Transmit(String),
    /// Open a peer connection to `session` with one data channel and tag its events with `link`;
    /// offer it (`offer` is `None`) or answer `offer`, and report the local description once ICE
    /// gathering is complete. Replaces any link to `session`.
    OpenLink {
        session: SessionId,
        link: LinkNumber,
        ice_servers: Vec<IceServer>,
        offer: Option<String>,
    },
    /// Apply `session`'s answer to the offer made.
    AcceptAnswer {
        session: SessionId,
        answer: String,
    },
    /// Close the link to `session`, if there is one.
    CloseLink {
        session: SessionId,
    },
    /// Send this text on the link's data channel, or drop it when the link's send queue is full
    /// (see the module documentation).
    SendOnLink {
        session: SessionId,
        text: String,
    },
    /// Send this chunk frame as a binary message on the link's data channel, or drop it when
    /// `bytes` would take more than `queue_limit` waiting there: [`LINK_CHUNK_QUEUE_BYTES`] for a
    /// chunk, [`LINK_SEND_QUEUE_BYTES`] (like history) for the small requests and answers.
    SendBinaryOnLink {
        session: SessionId,
        bytes: Vec<u8>,
        queue_limit: usize,
    },
    /// Read chunk `index` of `key` and its proof, and feed them back as
    /// [`NodeInput::ChunkRead`] (always: `None` when the store does not hold it).
    ReadChunk {
        peer: PeerId,
        key: AttachmentKey,
        index: u64,
    },
    /// Store this chunk of `key` with its proof: verified against the signed root. `from` is
    /// the peer that sent it.
    StoreChunk {
        key: AttachmentKey,
        index: u64,
        data: Vec<u8>,
        proof: Vec<Hash>,
        from: PublicKey,
    },
    /// Every chunk of `key` is stored: check the file against its `sha256` and show it.
    AttachmentComplete(AttachmentKey),
    /// Chunks of `key` are missing and no linked peer holds them; fetching goes on when one
    /// comes.
    AttachmentUnavailable(AttachmentKey),
    /// `key` is not fetched: too many attachments are being fetched already
    /// ([`crate::transfer::TransferLimits::fetches_at_once`]).
    AttachmentDeclined(AttachmentKey),
    /// Keep the relay key pinned at first contact.
    PinRelayKey(PublicKey),
    SaveCertificate(Option<MembershipCertificate>),
    SaveProfile(Profile),
    /// Keep an unsent message, to hand back in [`ClientConfig::outbox`] next time.
    OutboxPut(OutboxEntry),
    OutboxRemove(ClientNonce),
    /// Store these messages the relay delivered (then show them).
    StoreDelivered(Vec<Delivered>),
    /// Store these verified envelopes, new to this member, which came from peers.
    StoreFromPeers {
        channel: ChannelName,
        envelopes: Vec<VerifiedEnvelope>,
        transport: Transport,
    },
    /// Read the ids the store holds for `channel` and feed them back as [`NodeInput::Ids`].
    ReadIds {
        channel: ChannelName,
    },
    /// Read these envelopes and feed them back as [`NodeInput::Loaded`].
    Load {
        peer: PeerId,
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    /// For the page (or a virtual client's log).
    Event(ClientEvent),
    /// A channel's history state changed.
    HistoryState {
        channel: ChannelName,
        state: HistoryState,
    },
    /// The links or their counters changed.
    PeerStats(MeshStats),
    /// A peer broke the rules (a forged envelope, an unreadable frame): its key is refused for
    /// the session.
    PeerRefused {
        key: PublicKey,
        reason: String,
    },
}

/// See the module documentation.
#[derive(Debug)]
pub struct Node {
    session: ClientSession,
    mesh: PeerMesh,
    socket: SocketNumber,
    links: HashMap<SessionId, LinkNumber>,
    next_link: u64,
    /// Deliveries not handed out yet (see the module documentation).
    delivering: Vec<Delivered>,
    outputs: VecDeque<NodeOutput>,
    now: UnixMillis,
}

impl Node {
    pub fn new(now: UnixMillis, config: NodeConfig) -> Self {
        let mut node = Self {
            session: ClientSession::new(now, config.session),
            mesh: PeerMesh::with_sync_limits(now, config.mesh_seed, config.sync_limits),
            socket: SocketNumber(0),
            links: HashMap::new(),
            next_link: 0,
            delivering: Vec::new(),
            outputs: VecDeque::new(),
            now,
        };
        node.move_session_outputs();
        node
    }

    pub fn public_key(&self) -> PublicKey {
        self.session.public_key()
    }

    pub fn is_online(&self) -> bool {
        self.session.is_online()
    }

    pub fn peer_stats(&self) -> MeshStats {
        self.mesh.stats()
    }

    /// When to feed [`NodeInput::Timeout`]: the earliest of the session's and the mesh's.
    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        [self.session.poll_timeout(), self.mesh.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_output(&mut self) -> Option<NodeOutput> {
        if self.outputs.is_empty() {
            self.drain();
        }
        self.outputs.pop_front()
    }

    pub fn handle(&mut self, now: UnixMillis, input: NodeInput) {
        self.now = now;
        match input {
            NodeInput::Socket { socket, event } => self.on_socket(socket, event),
            NodeInput::Member(action) => {
                // Messages are sent with attachments the store holds whole already.
                if let MemberAction::Send { body, .. } = &action {
                    for attachment in body.attachments() {
                        let key = AttachmentKey::of(attachment);
                        self.feed_mesh(MeshInput::Holding {
                            key,
                            announce: true,
                        });
                    }
                }
                self.session.handle(now, action.into())
            }
            NodeInput::Link {
                session,
                link,
                event,
            } => {
                if self.links.get(&session) == Some(&link) {
                    self.feed_mesh(event.into_input(session));
                }
            }
            NodeInput::Ids { channel, ids } => self.feed_mesh(MeshInput::Ids { channel, ids }),
            NodeInput::Loaded {
                peer,
                channel,
                envelopes,
            } => self.feed_mesh(MeshInput::Loaded {
                peer,
                channel,
                envelopes,
            }),
            NodeInput::Evicted { channel, ids } => {
                self.feed_mesh(MeshInput::Evicted { channel, ids })
            }
            NodeInput::FetchAttachment { key, held } => {
                self.feed_mesh(MeshInput::Fetch { key, held })
            }
            NodeInput::CancelAttachment { key } => self.feed_mesh(MeshInput::CancelFetch { key }),
            NodeInput::AttachmentsHeld { keys } => {
                for key in keys {
                    self.feed_mesh(MeshInput::Holding {
                        key,
                        announce: false,
                    });
                }
            }
            NodeInput::AttachmentDropped { key } => self.feed_mesh(MeshInput::Dropped { key }),
            NodeInput::ChunkRead {
                peer,
                key,
                index,
                chunk,
            } => self.feed_mesh(MeshInput::ChunkRead {
                peer,
                key,
                index,
                chunk,
            }),
            NodeInput::Timeout => self.on_timeout(),
        }
        self.move_session_outputs();
    }

    fn on_socket(&mut self, socket: SocketNumber, event: SocketEvent) {
        if socket != self.socket {
            return;
        }
        let input = match event {
            SocketEvent::Opened => ClientInput::SocketOpened,
            SocketEvent::Frame(text) => ClientInput::Frame(text),
            SocketEvent::Closed => {
                self.hand_out_deliveries();
                self.outputs.push_back(NodeOutput::CloseSocket);
                ClientInput::SocketClosed
            }
        };
        self.session.handle(self.now, input);
    }

    fn on_timeout(&mut self) {
        if self.session.poll_timeout().is_some_and(|at| at <= self.now) {
            self.session.handle(self.now, ClientInput::Timeout);
        }
        if self.mesh.poll_timeout().is_some_and(|at| at <= self.now) {
            self.feed_mesh(MeshInput::Timeout);
        }
    }

    /// Feeds the mesh, after the deliveries it has not heard of.
    fn feed_mesh(&mut self, input: MeshInput) {
        self.hand_out_deliveries();
        self.mesh.handle(self.now, input);
    }

    /// The drain rule (see the module documentation).
    fn drain(&mut self) {
        loop {
            self.move_session_outputs();
            self.hand_out_deliveries();
            let Some(output) = self.mesh.poll_output() else {
                return;
            };
            self.move_mesh_output(output);
        }
    }

    fn move_session_outputs(&mut self) {
        while let Some(output) = self.session.poll_output() {
            self.move_session_output(output);
        }
    }

    /// Hands the waiting deliveries to the driver, then tells the mesh of them (whose outputs
    /// the next drain moves).
    fn hand_out_deliveries(&mut self) {
        if self.delivering.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.delivering);
        let envelopes: Vec<VerifiedEnvelope> = batch
            .iter()
            .map(|delivered| delivered.envelope.clone())
            .collect();
        self.outputs.push_back(NodeOutput::StoreDelivered(batch));
        for envelope in envelopes {
            self.mesh.handle(
                self.now,
                MeshInput::Delivered {
                    envelope: Box::new(envelope),
                },
            );
        }
    }

    fn move_session_output(&mut self, output: ClientOutput) {
        let output = match output {
            ClientOutput::Store {
                envelope,
                acknowledged,
            } => {
                self.delivering.push(Delivered {
                    envelope,
                    acknowledged,
                });
                return;
            }
            ClientOutput::Peers(news) => {
                self.hand_out_deliveries();
                self.mesh.handle(self.now, MeshInput::Relay(news));
                return;
            }
            ClientOutput::Connect => {
                self.socket.0 += 1;
                NodeOutput::OpenSocket(self.socket)
            }
            ClientOutput::Close => NodeOutput::CloseSocket,
            ClientOutput::Transmit(text) => NodeOutput::Transmit(text),
            ClientOutput::PinRelayKey(key) => NodeOutput::PinRelayKey(key),
            ClientOutput::SaveCertificate(certificate) => NodeOutput::SaveCertificate(certificate),
            ClientOutput::SaveProfile(profile) => NodeOutput::SaveProfile(profile),
            ClientOutput::OutboxPut(entry) => NodeOutput::OutboxPut(entry),
            ClientOutput::OutboxRemove(nonce) => NodeOutput::OutboxRemove(nonce),
            ClientOutput::Event(event) => NodeOutput::Event(event),
        };
        // Nothing overtakes a delivery.
        self.hand_out_deliveries();
        self.outputs.push_back(output);
    }

    fn move_mesh_output(&mut self, output: MeshOutput) {
        let output = match output {
            MeshOutput::Offer {
                session,
                ice_servers,
            } => self.open_link(session, ice_servers, None),
            MeshOutput::Answer {
                session,
                ice_servers,
                offer,
            } => self.open_link(session, ice_servers, Some(offer)),
            MeshOutput::Accept { session, answer } => NodeOutput::AcceptAnswer { session, answer },
            MeshOutput::Close { session } => {
                self.links.remove(&session);
                NodeOutput::CloseLink { session }
            }
            MeshOutput::ToRelay(input) => {
                self.session.handle(self.now, input);
                return;
            }
            MeshOutput::SendOnDataChannel { session, text } => {
                NodeOutput::SendOnLink { session, text }
            }
            MeshOutput::SendBinaryOnDataChannel {
                session,
                bytes,
                queue_limit,
            } => NodeOutput::SendBinaryOnLink {
                session,
                bytes,
                queue_limit,
            },
            MeshOutput::ReadChunk { peer, key, index } => {
                NodeOutput::ReadChunk { peer, key, index }
            }
            MeshOutput::StoreChunk {
                key,
                index,
                data,
                proof,
                from,
            } => NodeOutput::StoreChunk {
                key,
                index,
                data,
                proof,
                from,
            },
            MeshOutput::AttachmentComplete { key } => NodeOutput::AttachmentComplete(key),
            MeshOutput::AttachmentUnavailable { key } => NodeOutput::AttachmentUnavailable(key),
            MeshOutput::AttachmentDeclined { key } => NodeOutput::AttachmentDeclined(key),
            MeshOutput::ReadIds { channel } => NodeOutput::ReadIds { channel },
            MeshOutput::Load { peer, channel, ids } => NodeOutput::Load { peer, channel, ids },
            MeshOutput::Store {
                channel,
                envelopes,
                transport,
            } => NodeOutput::StoreFromPeers {
                channel,
                envelopes,
                transport,
            },
            MeshOutput::State { channel, state } => NodeOutput::HistoryState { channel, state },
            MeshOutput::Stats(stats) => NodeOutput::PeerStats(stats),
            MeshOutput::Refused { key, reason } => NodeOutput::PeerRefused { key, reason },
        };
        self.outputs.push_back(output);
    }

    fn open_link(
        &mut self,
        session: SessionId,
        ice_servers: Vec<IceServer>,
        offer: Option<String>,
    ) -> NodeOutput {
        self.next_link += 1;
        let link = LinkNumber(self.next_link);
        self.links.insert(session, link);
        NodeOutput::OpenLink {
            session,
            link,
            ice_servers,
            offer,
        }
    }
}

impl From<MemberAction> for ClientInput {
    fn from(action: MemberAction) -> Self {
        match action {
            MemberAction::Send {
                channel,
                body,
                nonce,
            } => Self::Send {
                channel,
                body,
                nonce,
            },
            MemberAction::Join(channel) => Self::Join(channel),
            MemberAction::SetDisplayName(name) => Self::SetDisplayName(name),
        }
    }
}
