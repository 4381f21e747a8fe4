//! The peer mesh: who offers data channels to whom, `busy`, the fallback to frames forwarded by
//! the relay, refusing a forging peer, and history reaching a newcomer over each path. A small
//! in-memory world plays the relay (presence, signals, forwarded frames) and WebRTC (an answer
//! applied opens the data channel, unless data channels are switched off).
//! They also run compiled to wasm32 in Chromium, where the mesh lives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod simulation;

use peerchat_shared::channel::ChannelName;
use peerchat_shared::chunk_tree::{leaf_hash, ChunkTree, CHUNK_BYTES};
use peerchat_shared::client::{ChannelPeer, ClientInput, PeerNews};
use peerchat_shared::codec::encode;
use peerchat_shared::frames::{PeerAddress, SessionId};
use peerchat_shared::identity::{PublicKey, SecretKey};
use peerchat_shared::ids::MessageId;
use peerchat_shared::limits::RELAYED_PEER_BURST_BYTES;
use peerchat_shared::membership::Role;
use peerchat_shared::mesh::{
    MeshInput, MeshOutput, PeerMesh, SignalPayload, Transport, LINK_OPEN_TIMEOUT_MILLIS,
    LINK_ROTATION_MILLIS, MAX_ARCHIVE_LINKS, MAX_LINKS, MAX_OFFERED_LINKS,
    RELAY_RESERVE_FOR_HISTORY,
};
use peerchat_shared::message::{Envelope, MessageBody};
use peerchat_shared::node::{LINK_CHUNK_QUEUE_BYTES, LINK_SEND_QUEUE_BYTES};
use peerchat_shared::peer::PeerToPeer;
use peerchat_shared::sync::{HistoryState, SyncLimits};
use peerchat_shared::time::UnixMillis;
use peerchat_shared::transfer::{AttachmentKey, ChunkFrame, ChunkWithProof};
use simulation::{general, history};
use std::collections::{BTreeMap, VecDeque};

fn relay_key() -> PublicKey {
    SecretKey::from_seed([1; 32]).public_key()
}

fn member_key(n: u8) -> PublicKey {
    SecretKey::from_seed([100 + n; 32]).public_key()
}

/// A member (not a virtual client) at `address`, as presence lists it.
fn member_at(address: PeerAddress) -> ChannelPeer {
    ChannelPeer {
        address,
        role: Role::Member,
    }
}

/// One member: its mesh, its store and what it was asked to do.
struct Member {
    address: PeerAddress,
    role: Role,
    mesh: PeerMesh,
    store: BTreeMap<MessageId, Envelope>,
    offers_made: Vec<SessionId>,
    busy_sent: usize,
    busy_received: usize,
    stored_over: BTreeMap<Transport, usize>,
    refused: Vec<PublicKey>,
    states: Vec<HistoryState>,
    /// Whether its descriptions list ICE candidates (a browser may gather none).
    gathers_candidates: bool,
    /// Attachment chunks held, with their proofs.
    chunks: BTreeMap<(AttachmentKey, u64), ChunkWithProof>,
    /// Who sent each chunk stored.
    chunk_senders: BTreeMap<PublicKey, usize>,
    completed: Vec<AttachmentKey>,
    unavailable: Vec<AttachmentKey>,
    /// Serves every chunk with one bit flipped.
    tampers: bool,
    /// Bytes of peer frames it sent through the relay.
    relayed_bytes: usize,
    /// Each binary frame it sent on a data channel: whether it was a chunk, and the queue
    /// limit it went with.
    binary_sent: Vec<(bool, usize)>,
}

/// A description as a WebRTC stack signals it, with one host candidate or none.
fn description(kind: &str, from: SessionId, with_candidate: bool) -> String {
    let candidate = if with_candidate {
        "a=candidate:1 1 udp 2122260223 10.77.0.1 50000 typ host\r\n"
    } else {
        ""
    };
    format!("v=0\r\ns={kind} from {}\r\n{candidate}", from.0)
}

impl Member {
    fn peer(&self) -> ChannelPeer {
        ChannelPeer {
            address: self.address,
            role: self.role,
        }
    }
}

/// Members on one relay, and a pretend WebRTC between them.
struct World {
    now: UnixMillis,
    members: Vec<Member>,
    data_channels_work: bool,
    /// (from member, input for the member at `to`): delivered in order.
    queue: VecDeque<(usize, MeshInput)>,
}

impl World {
    fn new(data_channels_work: bool) -> Self {
        Self {
            // After the relay stamped the test history.
            now: UnixMillis(1_900_000_000_000),
            members: Vec::new(),
            data_channels_work,
            queue: VecDeque::new(),
        }
    }

    /// A member logs in (as session `index + 1`) holding `envelopes`.
    fn add_member(&mut self, envelopes: &[Envelope]) -> usize {
        self.add_with_role(envelopes, Role::Member)
    }

    /// A member with `role` (`Virtual`: an archive peer) logs in holding `envelopes`.
    fn add_with_role(&mut self, envelopes: &[Envelope], role: Role) -> usize {
        self.add_with(envelopes, role, SyncLimits::default())
    }

    fn add_with(&mut self, envelopes: &[Envelope], role: Role, limits: SyncLimits) -> usize {
        let index = self.members.len();
        let address = PeerAddress {
            key: member_key(index as u8),
            session: SessionId(index as u64 + 1),
        };
        let mut mesh = PeerMesh::with_sync_limits(self.now, index as u64 + 7, limits);
        mesh.handle(
            self.now,
            MeshInput::Relay(PeerNews::Online {
                session: address.session,
                me: address.key,
                role,
                relay: relay_key(),
                ice_servers: vec![],
                relay_time: self.now,
            }),
        );
        self.members.push(Member {
            address,
            role,
            mesh,
            store: envelopes.iter().map(|e| (e.id, e.clone())).collect(),
            offers_made: Vec::new(),
            busy_sent: 0,
            busy_received: 0,
            stored_over: BTreeMap::new(),
            refused: Vec::new(),
            states: Vec::new(),
            gathers_candidates: true,
            chunks: BTreeMap::new(),
            chunk_senders: BTreeMap::new(),
            completed: Vec::new(),
            unavailable: Vec::new(),
            tampers: false,
            relayed_bytes: 0,
            binary_sent: Vec::new(),
        });
        index
    }

    /// `member` joins #general: it is told who is there, and they are told it arrived.
    fn join(&mut self, member: usize) {
        let arriving = self.members[member].peer();
        let already: Vec<ChannelPeer> = (0..member).map(|m| self.members[m].peer()).collect();
        self.queue.push_back((
            member,
            MeshInput::Relay(PeerNews::Listed {
                channel: general(),
                members: already,
            }),
        ));
        for other in 0..member {
            self.queue.push_back((
                other,
                MeshInput::Relay(PeerNews::Arrived {
                    channel: general(),
                    member: arriving,
                }),
            ));
        }
        self.run();
    }

    fn index_of(&self, session: SessionId) -> usize {
        self.members
            .iter()
            .position(|m| m.address.session == session)
            .expect("a session of this world")
    }

    /// Delivers everything queued and everything it causes.
    fn run(&mut self) {
        let mut steps = 0;
        loop {
            while let Some((to, input)) = self.queue.pop_front() {
                steps += 1;
                assert!(steps < 1_000_000, "the world does not settle");
                self.members[to].mesh.handle(self.now, input);
                self.drain(to);
            }
            let pending: Vec<usize> = (0..self.members.len()).collect();
            for member in pending {
                self.drain(member);
            }
            if self.queue.is_empty() {
                return;
            }
        }
    }

    /// Moves time on (firing time-outs) and settles again.
    fn advance(&mut self, millis: u64) {
        self.now = self.now.saturating_add_millis(millis);
        for member in 0..self.members.len() {
            if self.members[member]
                .mesh
                .poll_timeout()
                .is_some_and(|at| at <= self.now)
            {
                self.queue.push_back((member, MeshInput::Timeout));
            }
        }
        self.run();
    }

    fn drain(&mut self, member: usize) {
        while let Some(output) = self.members[member].mesh.poll_output() {
            self.carry_out(member, output);
        }
    }

    fn carry_out(&mut self, member: usize, output: MeshOutput) {
        let from = self.members[member].address;
        match output {
            MeshOutput::Offer { session, .. } => {
                self.members[member].offers_made.push(session);
                let candidates = self.members[member].gathers_candidates;
                self.queue.push_back((
                    member,
                    MeshInput::LocalDescription {
                        session,
                        sdp: description("offer", from.session, candidates),
                    },
                ));
            }
            MeshOutput::Answer { session, .. } => {
                let candidates = self.members[member].gathers_candidates;
                self.queue.push_back((
                    member,
                    MeshInput::LocalDescription {
                        session,
                        sdp: description("answer", from.session, candidates),
                    },
                ))
            }
            MeshOutput::Accept { session, .. } => {
                if self.data_channels_work {
                    let other = self.index_of(session);
                    self.queue
                        .push_back((member, MeshInput::LinkOpen { session }));
                    self.queue.push_back((
                        other,
                        MeshInput::LinkOpen {
                            session: from.session,
                        },
                    ));
                }
            }
            MeshOutput::Close { .. } | MeshOutput::Stats(_) => {}
            MeshOutput::ToRelay(ClientInput::Signal { to, data }) => {
                let other = self.index_of(to);
                if data == encode(&SignalPayload::Busy) {
                    self.members[member].busy_sent += 1;
                    self.members[other].busy_received += 1;
                }
                self.queue
                    .push_back((other, MeshInput::Relay(PeerNews::Signal { from, data })));
            }
            MeshOutput::ToRelay(ClientInput::PeerFrame { to, frame }) => {
                self.members[member].relayed_bytes += frame.len();
                let other = self.index_of(to);
                self.queue
                    .push_back((other, MeshInput::Relay(PeerNews::PeerFrame { from, frame })));
            }
            MeshOutput::ToRelay(other) => panic!("unexpected relay input {other:?}"),
            MeshOutput::SendOnDataChannel { session, text } => {
                let other = self.index_of(session);
                self.queue.push_back((
                    other,
                    MeshInput::DataChannelFrame {
                        session: from.session,
                        text,
                    },
                ));
            }
            MeshOutput::ReadIds { channel } => {
                let ids = self.members[member].store.keys().copied().collect();
                self.queue
                    .push_back((member, MeshInput::Ids { channel, ids }));
            }
            MeshOutput::Load { peer, channel, ids } => {
                let store = &self.members[member].store;
                let envelopes = ids.iter().filter_map(|id| store.get(id).cloned()).collect();
                self.queue.push_back((
                    member,
                    MeshInput::Loaded {
                        peer,
                        channel,
                        envelopes,
                    },
                ));
            }
            MeshOutput::Store {
                envelopes,
                transport,
                ..
            } => {
                let me = &mut self.members[member];
                for envelope in envelopes {
                    let envelope = envelope.envelope().clone();
                    assert!(
                        me.store.insert(envelope.id, envelope).is_none(),
                        "stored twice"
                    );
                    *me.stored_over.entry(transport).or_insert(0) += 1;
                }
            }
            MeshOutput::State { state, .. } => self.members[member].states.push(state),
            MeshOutput::Refused { key, .. } => self.members[member].refused.push(key),
            MeshOutput::SendBinaryOnDataChannel {
                session,
                bytes,
                queue_limit,
            } => {
                let chunk = matches!(ChunkFrame::decode(&bytes), Ok(ChunkFrame::Chunk { .. }));
                self.members[member].binary_sent.push((chunk, queue_limit));
                let other = self.index_of(session);
                self.queue.push_back((
                    other,
                    MeshInput::DataChannelBinary {
                        session: from.session,
                        bytes,
                    },
                ));
            }
            MeshOutput::ReadChunk { peer, key, index } => {
                let me = &self.members[member];
                let chunk = me
                    .chunks
                    .get(&(key, index))
                    .cloned()
                    .map(|(mut data, proof)| {
                        if me.tampers {
                            data[0] ^= 1;
                        }
                        (data, proof)
                    });
                self.queue.push_back((
                    member,
                    MeshInput::ChunkRead {
                        peer,
                        key,
                        index,
                        chunk,
                    },
                ));
            }
            MeshOutput::StoreChunk {
                key,
                index,
                data,
                proof,
                from,
            } => {
                let me = &mut self.members[member];
                me.chunks.insert((key, index), (data, proof));
                *me.chunk_senders.entry(from).or_insert(0) += 1;
            }
            MeshOutput::AttachmentComplete { key } => self.members[member].completed.push(key),
            MeshOutput::AttachmentUnavailable { key } => self.members[member].unavailable.push(key),
            MeshOutput::AttachmentDeclined { key } => panic!("declined {key:?}"),
        }
    }
}

#[test]
fn a_newcomer_offers_data_channels_to_members_already_there_and_gets_history_over_them() {
    let envelopes = history(300);
    let mut world = World::new(true);
    let (a, b) = (world.add_member(&envelopes), world.add_member(&envelopes));
    world.join(a);
    world.join(b);
    let c = world.add_member(&[]);
    world.join(c);

    assert_eq!(world.members[a].offers_made, Vec::<SessionId>::new());
    assert_eq!(world.members[b].offers_made, vec![SessionId(1)]);
    let mut offered_by_c = world.members[c].offers_made.clone();
    offered_by_c.sort();
    assert_eq!(offered_by_c, vec![SessionId(1), SessionId(2)]);
    assert_eq!(world.members[c].store.len(), 300);
    assert_eq!(
        world.members[c].stored_over,
        BTreeMap::from([(Transport::DataChannel, 300)])
    );
    let stats = world.members[c].mesh.stats();
    assert_eq!((stats.data_channels_open, stats.relayed_links), (2, 0));
    assert_eq!(
        world.members[c].states.last(),
        Some(&HistoryState::UpToDate)
    );
}

#[test]
fn a_member_offers_at_most_its_share_of_links_in_a_big_channel() {
    let mut world = World::new(true);
    for _ in 0..12 {
        let member = world.add_member(&[]);
        world.join(member);
    }
    for member in &world.members {
        assert!(member.offers_made.len() - member.busy_received <= MAX_OFFERED_LINKS);
        let links = member.mesh.stats().data_channels_open;
        assert!(links <= MAX_LINKS, "{links} links");
    }
    let last = &world.members[11];
    assert_eq!(
        last.offers_made.len() - last.busy_received,
        MAX_OFFERED_LINKS
    );
}

#[test]
fn a_member_holding_its_maximum_of_links_answers_busy_and_the_offerer_links_elsewhere() {
    let mut world = World::new(true);
    let hub = world.add_member(&[]);
    world.join(hub);
    let second = world.add_member(&[]);
    world.join(second);
    // Later members each offer to the first two (they are the only ones listed with room)...
    for _ in 0..MAX_LINKS + 2 {
        let member = world.add_member(&[]);
        world.join(member);
    }
    // ...until the first one is full and answers busy; offerers then link to someone else.
    assert!(world.members[hub].busy_sent > 0);
    assert_eq!(
        world.members[hub].mesh.stats().data_channels_open,
        MAX_LINKS
    );
    let last = world.members.len() - 1;
    assert!(world.members[last].mesh.stats().data_channels_open >= 1);
}

#[test]
fn a_data_channel_that_does_not_open_gives_way_to_frames_forwarded_by_the_relay() {
    let envelopes = history(200);
    let mut world = World::new(false);
    let b = world.add_member(&envelopes);
    world.join(b);
    let c = world.add_member(&[]);
    world.join(c);
    assert!(
        world.members[c].store.is_empty(),
        "nothing before the time-out"
    );

    world.advance(LINK_OPEN_TIMEOUT_MILLIS);
    for _ in 0..20 {
        world.advance(500);
    }

    assert_eq!(world.members[c].store.len(), 200);
    assert_eq!(
        world.members[c].stored_over,
        BTreeMap::from([(Transport::Relay, 200)])
    );
    let stats = world.members[c].mesh.stats();
    assert_eq!((stats.data_channels_open, stats.relayed_links), (0, 1));
}

#[test]
fn links_being_made_show_connecting_until_a_path_to_the_peer_works() {
    let envelopes = history(20);
    let mut world = World::new(false);
    let b = world.add_member(&envelopes);
    world.join(b);
    let c = world.add_member(&[]);
    world.join(c);
    let connecting = HistoryState::Connecting { peers: 1 };
    assert_eq!(
        world.members[c].states.last(),
        Some(&connecting),
        "the offerer"
    );
    assert_eq!(
        world.members[b].states.last(),
        Some(&connecting),
        "the answerer"
    );

    world.advance(LINK_OPEN_TIMEOUT_MILLIS);
    for _ in 0..5 {
        world.advance(500);
    }
    assert_eq!(world.members[c].store.len(), 20);
    assert_eq!(
        world.members[c].states.last(),
        Some(&HistoryState::UpToDate)
    );
    let stats = world.members[c].mesh.stats();
    assert_eq!(
        (stats.links_timed_out, stats.links_without_candidates),
        (1, 0)
    );
}

#[test]
fn a_member_that_gathers_no_ice_candidate_takes_the_relay_path_at_once() {
    for no_candidates_side in ["offerer", "answerer"] {
        let envelopes = history(20);
        let mut world = World::new(true);
        let b = world.add_member(&envelopes);
        world.members[b].gathers_candidates = no_candidates_side != "answerer";
        world.join(b);
        let c = world.add_member(&[]);
        world.members[c].gathers_candidates = no_candidates_side != "offerer";
        world.join(c);
        // Well within the data channel's time-out.
        for _ in 0..5 {
            world.advance(100);
        }
        assert_eq!(world.members[c].store.len(), 20, "{no_candidates_side}");
        assert_eq!(
            world.members[c].stored_over,
            BTreeMap::from([(Transport::Relay, 20)])
        );
        for member in [b, c] {
            let stats = world.members[member].mesh.stats();
            assert_eq!((stats.relayed_links, stats.links_timed_out), (1, 0));
        }
        let without_candidates =
            |member: usize| world.members[member].mesh.stats().links_without_candidates;
        assert_eq!(
            (without_candidates(b), without_candidates(c)),
            (1, 1),
            "one side found out and said so, the other followed"
        );
    }
}

#[test]
fn a_peer_sending_a_forged_envelope_is_refused_for_the_session_even_as_a_new_session() {
    let envelopes = history(3);
    let mut world = World::new(true);
    let honest = world.add_member(&envelopes);
    world.join(honest);
    let forger = world.add_member(&[]);
    world.join(forger);
    let c = world.add_member(&[]);
    world.join(c);
    assert_eq!(world.members[c].store.len(), 3);

    let mut forged = history(4)[3].clone();
    forged.body = MessageBody::text("altered after signing");
    let forger_address = world.members[forger].address;
    world.queue.push_back((
        c,
        MeshInput::Relay(PeerNews::PeerFrame {
            from: forger_address,
            frame: encode(&PeerToPeer::Have {
                channel: general(),
                ids: vec![forged.id],
            }),
        }),
    ));
    world.queue.push_back((
        c,
        MeshInput::Relay(PeerNews::PeerFrame {
            from: forger_address,
            frame: encode(&PeerToPeer::Envelopes {
                channel: general(),
                envelopes: vec![forged.clone()],
            }),
        }),
    ));
    world.run();
    assert!(!world.members[c].store.contains_key(&forged.id));
    assert_eq!(world.members[c].refused, vec![forger_address.key]);
    for _ in 0..10 {
        world.advance(1_000);
    }
    assert_eq!(
        world.members[c].states.last(),
        Some(&HistoryState::UpToDate),
        "what only the forger claimed to hold is not waited for"
    );

    // The same key, back as another session, is neither answered nor heard.
    let again = PeerAddress {
        key: forger_address.key,
        session: SessionId(99),
    };
    let mesh = &mut world.members[c].mesh;
    let now = world.now;
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::Arrived {
            channel: general(),
            member: member_at(again),
        }),
    );
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::Signal {
            from: again,
            data: encode(&SignalPayload::Offer {
                sdp: description("offer", SessionId(99), true),
            }),
        }),
    );
    while let Some(output) = mesh.poll_output() {
        assert!(
            !matches!(output, MeshOutput::Answer { .. } | MeshOutput::ToRelay(_)),
            "{output:?}"
        );
    }
}

#[test]
fn losing_the_relay_closes_every_link_and_the_next_login_links_again() {
    let envelopes = history(10);
    let mut world = World::new(true);
    let b = world.add_member(&envelopes);
    world.join(b);
    let c = world.add_member(&[]);
    world.join(c);
    assert_eq!(world.members[c].mesh.stats().data_channels_open, 1);

    let now = world.now;
    world.members[c]
        .mesh
        .handle(now, MeshInput::Relay(PeerNews::Offline));
    let mut closed = Vec::new();
    while let Some(output) = world.members[c].mesh.poll_output() {
        if let MeshOutput::Close { session } = output {
            closed.push(session);
        }
    }
    assert_eq!(closed, vec![SessionId(1)]);
    assert_eq!(world.members[c].mesh.stats().data_channels_open, 0);

    let b_address = world.members[b].address;
    let mesh = &mut world.members[c].mesh;
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::Online {
            session: SessionId(3),
            me: member_key(c as u8),
            role: Role::Member,
            relay: relay_key(),
            ice_servers: vec![],
            relay_time: now,
        }),
    );
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::Listed {
            channel: general(),
            members: vec![member_at(b_address)],
        }),
    );
    let outputs: Vec<MeshOutput> = std::iter::from_fn(|| mesh.poll_output()).collect();
    assert!(outputs.contains(&MeshOutput::Offer {
        session: b_address.session,
        ice_servers: vec![]
    }));
}

#[test]
fn signals_from_sessions_outside_the_members_channels_are_ignored() {
    let now = UnixMillis(2);
    let mut mesh = alone_in_general(1, now);
    let stranger = address_of(5);
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::Signal {
            from: stranger,
            data: encode(&SignalPayload::Offer {
                sdp: description("offer", SessionId(99), true),
            }),
        }),
    );
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::PeerFrame {
            from: stranger,
            frame: "{}".into(),
        }),
    );
    let outputs: Vec<MeshOutput> = std::iter::from_fn(|| mesh.poll_output()).collect();
    assert_eq!(
        outputs,
        vec![MeshOutput::ReadIds {
            channel: ChannelName::new("general").unwrap()
        }]
    );
}

#[test]
fn a_broken_data_channel_is_offered_again_with_the_relays_ice_servers() {
    let ice_servers = vec![peerchat_shared::frames::IceServer {
        urls: vec!["stun:stun.example.org:3478".into()],
        username: None,
        credential: None,
    }];
    let mut mesh = PeerMesh::new(UnixMillis(1), 3);
    let now = UnixMillis(2);
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::Online {
            session: SessionId(2),
            me: member_key(0),
            role: Role::Member,
            relay: relay_key(),
            ice_servers: ice_servers.clone(),
            relay_time: now,
        }),
    );
    let other = PeerAddress {
        key: member_key(1),
        session: SessionId(1),
    };
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::Listed {
            channel: general(),
            members: vec![member_at(other)],
        }),
    );
    let offer = MeshOutput::Offer {
        session: other.session,
        ice_servers,
    };
    let outputs: Vec<MeshOutput> = std::iter::from_fn(|| mesh.poll_output()).collect();
    assert!(outputs.contains(&offer), "{outputs:?}");
    mesh.handle(
        now,
        MeshInput::LinkOpen {
            session: other.session,
        },
    );
    assert_eq!(mesh.stats().data_channels_open, 1);
    while mesh.poll_output().is_some() {}

    mesh.handle(
        now,
        MeshInput::LinkDown {
            session: other.session,
        },
    );
    let outputs: Vec<MeshOutput> = std::iter::from_fn(|| mesh.poll_output()).collect();
    assert!(outputs.contains(&offer), "offered again: {outputs:?}");
    assert_eq!(mesh.stats().data_channels_open, 0);
}

#[test]
fn a_newcomer_links_to_members_first_and_to_at_most_two_archive_peers() {
    let mut world = World::new(true);
    let archives: Vec<usize> = (0..5)
        .map(|_| world.add_with_role(&[], Role::Virtual))
        .collect();
    for archive in &archives {
        world.join(*archive);
    }
    let member = world.add_member(&[]);
    world.join(member);
    let newcomer = world.add_member(&[]);
    world.join(newcomer);

    let offered = &world.members[newcomer].offers_made;
    assert_eq!(
        offered.first(),
        Some(&world.members[member].address.session),
        "the member is offered a link first"
    );
    assert_eq!(offered.len(), 1 + MAX_ARCHIVE_LINKS);

    // Archives arriving later offer to members first; neither has a place left for them.
    let late = world.add_with_role(&[], Role::Virtual);
    world.join(late);
    assert_eq!(world.members[newcomer].busy_sent, 1);
    assert_eq!(world.members[member].busy_sent, 1);
    assert_eq!(
        world.members[newcomer].mesh.stats().data_channels_open,
        1 + MAX_ARCHIVE_LINKS
    );
}

#[test]
fn a_newcomer_is_served_by_a_member_before_an_archive_peer() {
    let envelopes = history(40);
    let mut world = World::new(true);
    let archive = world.add_with_role(&envelopes, Role::Virtual);
    world.join(archive);
    let member = world.add_member(&envelopes);
    world.join(member);
    let newcomer = world.add_member(&[]);
    world.join(newcomer);
    for _ in 0..10 {
        world.advance(1_000);
    }

    let stats = world.members[newcomer].mesh.stats();
    assert_eq!(world.members[newcomer].store.len(), 40);
    assert_eq!(stats.envelopes_over_data_channel, 40);
    assert_eq!(
        stats.envelopes_from_archive_peers, 0,
        "the member served all"
    );
}

#[test]
fn an_archive_peer_serves_what_no_member_holds_after_its_grace() {
    let envelopes = history(40);
    let mut world = World::new(true);
    let archive = world.add_with_role(&envelopes, Role::Virtual);
    world.join(archive);
    let member = world.add_member(&envelopes[..10]);
    world.join(member);
    let newcomer = world.add_member(&[]);
    world.join(newcomer);
    assert_eq!(
        world.members[newcomer].store.len(),
        10,
        "at first only the member's ten come"
    );
    for _ in 0..5 {
        world.advance(1_000);
    }

    let stats = world.members[newcomer].mesh.stats();
    assert_eq!(world.members[newcomer].store.len(), 40);
    assert_eq!(stats.envelopes_from_archive_peers, 30);
    assert_eq!(
        world.members[newcomer].states.last(),
        Some(&HistoryState::UpToDate)
    );
}

#[test]
fn a_member_with_a_horizon_fetches_only_recent_history() {
    let envelopes = history(300);
    let mut world = World::new(true);
    // The history is one message per 10 ms; now is just after the last one.
    world.now = envelopes[299].id.timestamp().saturating_add_millis(1);
    let holder = world.add_member(&envelopes);
    world.join(holder);
    let limits = SyncLimits {
        horizon_millis: Some(1_000),
        ..SyncLimits::default()
    };
    let archive = world.add_with(&[], Role::Virtual, limits);
    world.join(archive);
    assert_eq!(
        world.members[archive].store.len(),
        100,
        "only the last second's messages are fetched"
    );
}

#[test]
fn what_the_store_evicted_and_anything_older_is_not_fetched_again() {
    let envelopes = history(300);
    let mut world = World::new(true);
    let holder = world.add_member(&envelopes);
    world.join(holder);
    let archive = world.add_with_role(&[], Role::Virtual);
    world.join(archive);
    assert_eq!(world.members[archive].store.len(), 300);

    let evicted: Vec<MessageId> = envelopes[..50].iter().map(|e| e.id).collect();
    for id in &evicted {
        world.members[archive].store.remove(id);
    }
    let now = world.now;
    world.members[archive].mesh.handle(
        now,
        MeshInput::Evicted {
            channel: general(),
            ids: evicted,
        },
    );
    // Several anti-entropy rounds with the holder, which has all 300.
    for _ in 0..100 {
        world.advance(1_000);
    }
    assert_eq!(world.members[archive].store.len(), 250);
    assert_eq!(
        world.members[archive].states.last(),
        Some(&HistoryState::UpToDate)
    );
}

/// Member 0's mesh, online as session 1 and alone in #general so far.
fn alone_in_general(seed: u64, now: UnixMillis) -> PeerMesh {
    let mut mesh = PeerMesh::new(now, seed);
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::Online {
            session: SessionId(1),
            me: member_key(0),
            role: Role::Member,
            relay: relay_key(),
            ice_servers: vec![],
            relay_time: now,
        }),
    );
    mesh.handle(
        now,
        MeshInput::Relay(PeerNews::Listed {
            channel: general(),
            members: vec![],
        }),
    );
    mesh
}

/// Member `n` at session `n`.
fn address_of(n: u8) -> PeerAddress {
    PeerAddress {
        key: member_key(n),
        session: SessionId(u64::from(n)),
    }
}

#[test]
fn forwarded_frames_from_members_never_signalled_with_take_no_link_place() {
    let now = UnixMillis(2);
    let mut mesh = alone_in_general(5, now);
    // Members who arrive later offer links themselves; these never do, and only send frames.
    let have = encode(&PeerToPeer::Have {
        channel: general(),
        ids: vec![],
    });
    for n in 2..20u8 {
        let stranger = address_of(n);
        mesh.handle(
            now,
            MeshInput::Relay(PeerNews::Arrived {
                channel: general(),
                member: member_at(stranger),
            }),
        );
        mesh.handle(
            now,
            MeshInput::Relay(PeerNews::PeerFrame {
                from: stranger,
                frame: have.clone(),
            }),
        );
    }
    while mesh.poll_output().is_some() {}
    assert_eq!(mesh.stats().relayed_links, 0);
}

#[test]
fn links_that_bring_nothing_are_replaced_once_every_place_is_taken() {
    let now = UnixMillis(2);
    let mut mesh = alone_in_general(9, now);
    let arrive_and_offer = |mesh: &mut PeerMesh, at: UnixMillis, n: u8| {
        let from = address_of(n);
        mesh.handle(
            at,
            MeshInput::Relay(PeerNews::Arrived {
                channel: general(),
                member: member_at(from),
            }),
        );
        mesh.handle(
            at,
            MeshInput::Relay(PeerNews::Signal {
                from,
                data: encode(&SignalPayload::Offer {
                    sdp: description("offer", from.session, true),
                }),
            }),
        );
        std::iter::from_fn(|| mesh.poll_output()).collect::<Vec<_>>()
    };
    // Eight keys that send nothing take every place.
    for n in 2..10 {
        arrive_and_offer(&mut mesh, now, n);
        let session = address_of(n).session;
        let sdp = description("answer", session, true);
        mesh.handle(now, MeshInput::LocalDescription { session, sdp });
        mesh.handle(now, MeshInput::LinkOpen { session });
    }
    assert_eq!(mesh.stats().data_channels_open, 8);
    let busy = encode(&SignalPayload::Busy);
    let answered_busy = |outputs: &[MeshOutput], n: u8| {
        outputs.iter().any(|output| {
            matches!(output, MeshOutput::ToRelay(ClientInput::Signal { to, data })
                if *to == address_of(n).session && *data == busy)
        })
    };
    let honest = 10;
    assert!(answered_busy(
        &arrive_and_offer(&mut mesh, now, honest),
        honest
    ));

    // A minute later the link that brought nothing for longest makes way for the honest one.
    let later = now.saturating_add_millis(LINK_ROTATION_MILLIS);
    assert!(
        mesh.poll_timeout().is_some_and(|at| at <= later),
        "a timer is set"
    );
    mesh.handle(later, MeshInput::Timeout);
    let outputs: Vec<MeshOutput> = std::iter::from_fn(|| mesh.poll_output()).collect();
    assert!(outputs.contains(&MeshOutput::Close {
        session: address_of(2).session
    }));
    assert!(outputs.contains(&MeshOutput::Offer {
        session: address_of(honest).session,
        ice_servers: vec![],
    }));
    assert_eq!(mesh.stats().links_rotated, 1);
    // The key replaced does not take the place back.
    assert!(answered_busy(&arrive_and_offer(&mut mesh, later, 2), 2));
}

/// A file of `size` bytes, its key and its chunks with their proofs.
fn attachment(size: usize) -> (Vec<u8>, AttachmentKey, Vec<ChunkWithProof>) {
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let tree = ChunkTree::from_leaves(bytes.chunks(CHUNK_BYTES).map(leaf_hash).collect());
    let key = AttachmentKey {
        root: tree.root(),
        size: size as u64,
    };
    let chunks = bytes
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(index, chunk)| (chunk.to_vec(), tree.proof(index)))
        .collect();
    (bytes, key, chunks)
}

impl World {
    fn hold(&mut self, member: usize, key: AttachmentKey, chunks: &[ChunkWithProof]) {
        for (index, chunk) in chunks.iter().enumerate() {
            self.members[member]
                .chunks
                .insert((key, index as u64), chunk.clone());
        }
        let holding = MeshInput::Holding {
            key,
            announce: false,
        };
        self.queue.push_back((member, holding));
        self.run();
    }

    fn fetch(&mut self, member: usize, key: AttachmentKey) {
        self.queue
            .push_back((member, MeshInput::Fetch { key, held: vec![] }));
        self.run();
    }

    /// The file `member` holds under `key`, put together from its chunks.
    fn assembled(&self, member: usize, key: AttachmentKey) -> Vec<u8> {
        self.members[member]
            .chunks
            .range((key, 0)..=(key, u64::MAX))
            .flat_map(|(_, (data, _))| data.clone())
            .collect()
    }
}

#[test]
fn an_attachment_comes_over_data_channels_from_every_member_holding_it() {
    let (bytes, key, chunks) = attachment(40 * CHUNK_BYTES + 1_000);
    let mut world = World::new(true);
    let members: Vec<usize> = (0..4).map(|_| world.add_member(&[])).collect();
    for &member in &members {
        world.join(member);
    }
    for &holder in &members[..3] {
        world.hold(holder, key, &chunks);
    }
    let newcomer = members[3];
    world.fetch(newcomer, key);
    let me = &world.members[newcomer];
    assert_eq!(me.completed, vec![key]);
    assert_eq!(world.assembled(newcomer, key), bytes);
    assert!(
        me.chunk_senders.len() > 1,
        "chunks from several holders: {:?}",
        me.chunk_senders.values()
    );
    let stats = me.mesh.stats();
    assert_eq!(stats.chunks_over_data_channel, 41);
    assert_eq!(stats.chunks_over_relay, 0);
    // Chunks give way to history; the requests and answers about them queue like history.
    let sent: Vec<(bool, usize)> = world
        .members
        .iter()
        .flat_map(|member| member.binary_sent.iter().copied())
        .collect();
    assert!(sent.contains(&(true, LINK_CHUNK_QUEUE_BYTES)));
    assert!(sent.contains(&(false, LINK_SEND_QUEUE_BYTES)));
    assert!(sent.iter().all(|(chunk, limit)| *limit
        == if *chunk {
            LINK_CHUNK_QUEUE_BYTES
        } else {
            LINK_SEND_QUEUE_BYTES
        }));
}

#[test]
fn without_data_channels_a_photo_travels_through_the_relay_leaving_room_for_history() {
    // 3 MiB in base64 is more than the quota's burst less the history reserve: some chunk
    // frames are held back and asked again once the quota refills.
    let (bytes, key, chunks) = attachment(3 * 1024 * 1024);
    let mut world = World::new(false);
    let (a, b) = (world.add_member(&[]), world.add_member(&[]));
    world.join(a);
    world.join(b);
    world.advance(LINK_OPEN_TIMEOUT_MILLIS);
    world.hold(a, key, &chunks);
    let before = world.members[a].relayed_bytes;
    world.fetch(b, key);
    let burst = world.members[a].relayed_bytes - before;
    assert!(
        burst <= RELAYED_PEER_BURST_BYTES - RELAY_RESERVE_FOR_HISTORY,
        "chunks took {burst} bytes of the quota at once"
    );
    for _ in 0..60 {
        if !world.members[b].completed.is_empty() {
            break;
        }
        world.advance(1_000);
    }
    assert_eq!(world.members[b].completed, vec![key]);
    assert_eq!(world.assembled(b, key), bytes);
    assert_eq!(world.members[b].mesh.stats().chunks_over_relay, 96);
    assert!(world.members[a].mesh.stats().relayed_chunks_held_back > 0);
}

#[test]
fn a_member_serving_tampered_chunks_is_refused_and_the_file_completes_from_another() {
    let (bytes, key, chunks) = attachment(20 * CHUNK_BYTES);
    let mut world = World::new(true);
    let (liar, honest, newcomer) = (
        world.add_member(&[]),
        world.add_member(&[]),
        world.add_member(&[]),
    );
    for member in [liar, honest, newcomer] {
        world.join(member);
    }
    world.hold(liar, key, &chunks);
    world.hold(honest, key, &chunks);
    world.members[liar].tampers = true;
    world.fetch(newcomer, key);
    let me = &world.members[newcomer];
    assert_eq!(me.refused, vec![member_key(liar as u8)]);
    assert_eq!(me.completed, vec![key]);
    assert_eq!(world.assembled(newcomer, key), bytes);
    assert!(!me.chunk_senders.contains_key(&member_key(liar as u8)));
}

#[test]
fn an_unreadable_chunk_frame_costs_the_sender_its_link() {
    let mut world = World::new(true);
    let (a, b) = (world.add_member(&[]), world.add_member(&[]));
    world.join(a);
    world.join(b);
    let from = world.members[a].address.session;
    world.queue.push_back((
        b,
        MeshInput::DataChannelBinary {
            session: from,
            bytes: vec![0x02; 60],
        },
    ));
    world.run();
    assert_eq!(world.members[b].refused, vec![member_key(a as u8)]);
}

#[test]
fn an_attachment_nobody_linked_holds_is_reported_unavailable() {
    let (_, key, _) = attachment(1_000);
    let mut world = World::new(true);
    let (a, b) = (world.add_member(&[]), world.add_member(&[]));
    world.join(a);
    world.join(b);
    world.fetch(b, key);
    assert_eq!(world.members[b].unavailable, vec![key]);
    assert!(world.members[b].completed.is_empty());
    assert!(
        world.members[b].refused.is_empty(),
        "lacking it is no offence"
    );
}
