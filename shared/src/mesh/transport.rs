//! Peer frames over a link's data channel, or through the relay paced to its quota, between
//! the engines (history sync and attachment transfer) and the peers; and what happens to a peer
//! that breaks the rules.
//!
//! History frames are JSON text; chunk frames are binary on a data channel and unpadded
//! base64url through the relay, where a JSON frame starts with `{` and base64url never does.

use super::{
    Link, LinkState, MeshOutput, PeerMesh, Transport, MAX_REFUSED_KEYS, RELAY_RESERVE_FOR_HISTORY,
};
use crate::client::ClientInput;
use crate::codec::{decode_peer_frame, encode};
use crate::encoding::{from_base64url, to_base64url};
use crate::frames::{PeerAddress, SessionId};
use crate::node::{LINK_CHUNK_QUEUE_BYTES, LINK_SEND_QUEUE_BYTES};
use crate::peer::PeerToPeer;
use crate::sync::{PeerId, SyncInput, SyncOutput};
use crate::time::UnixMillis;
use crate::transfer::{ChunkFrame, TransferInput, TransferOutput};

impl PeerMesh {
    pub(super) fn fall_back_to_relay(&mut self, now: UnixMillis, session: SessionId) {
        self.outputs.push_back(MeshOutput::Close { session });
        if let Some(link) = self.links.get_mut(&session) {
            link.state = LinkState::Relayed;
            self.peer_up(now, session);
        }
    }

    pub(super) fn on_data_channel_frame(
        &mut self,
        now: UnixMillis,
        session: SessionId,
        text: &str,
    ) {
        let Some(link) = self.links.get(&session) else {
            return;
        };
        if link.state != LinkState::Open {
            return;
        }
        let peer = link.peer;
        self.on_peer_frame(now, peer, text);
    }

    pub(super) fn on_data_channel_binary(
        &mut self,
        now: UnixMillis,
        session: SessionId,
        bytes: &[u8],
    ) {
        let Some(link) = self.links.get(&session) else {
            return;
        };
        if link.state != LinkState::Open {
            return;
        }
        let peer = link.peer;
        self.on_chunk_frame(now, peer, bytes);
    }

    pub(super) fn on_forwarded_frame(&mut self, now: UnixMillis, from: PeerAddress, text: &str) {
        if self.key_of(from.session) != Some(from.key) || self.is_refused(&from.key) {
            return;
        }
        // Only from a session this side signalled with: an unsolicited frame takes no link
        // place (else a few keys could fill every place and cut a member off from the rest).
        match self.links.get(&from.session).map(|link| link.state) {
            Some(LinkState::Offering { .. } | LinkState::Answering { .. }) => {
                self.fall_back_to_relay(now, from.session)
            }
            Some(LinkState::Open | LinkState::Relayed) => {}
            None => return,
        }
        let Some(peer) = self.links.get(&from.session).map(|link| link.peer) else {
            return;
        };
        if text.starts_with('{') {
            self.on_peer_frame(now, peer, text);
        } else {
            match from_base64url(text) {
                Ok(bytes) => self.on_chunk_frame(now, peer, &bytes),
                Err(error) => {
                    self.refuse_peer(now, peer, &format!("unreadable peer frame: {error}"))
                }
            }
        }
    }

    fn on_chunk_frame(&mut self, now: UnixMillis, peer: PeerId, bytes: &[u8]) {
        match ChunkFrame::decode(bytes) {
            Ok(frame) => self.transfer_input(now, TransferInput::Frame { peer, frame }),
            Err(error) => self.refuse_peer(now, peer, &format!("unreadable chunk frame: {error}")),
        }
    }

    /// Feeds the transfer engine and carries out what it asks for.
    pub(super) fn transfer_input(&mut self, now: UnixMillis, input: TransferInput) {
        self.transfer.handle(now, input);
        let mut outputs = Vec::new();
        while let Some(output) = self.transfer.poll_output() {
            outputs.push(output);
        }
        for output in outputs {
            self.on_transfer_output(now, output);
        }
    }

    fn on_transfer_output(&mut self, now: UnixMillis, output: TransferOutput) {
        let output = match output {
            TransferOutput::Send { peer, frame } => {
                return self.send_chunk_frame(now, peer, &frame)
            }
            TransferOutput::Disconnect { peer, reason } => {
                return self.refuse_peer(now, peer, &reason)
            }
            TransferOutput::ReadChunk { peer, key, index } => {
                MeshOutput::ReadChunk { peer, key, index }
            }
            TransferOutput::StoreChunk {
                key,
                index,
                data,
                proof,
                from,
            } => {
                let Some(link) = self
                    .sessions_by_peer
                    .get(&from)
                    .and_then(|session| self.links.get(session))
                else {
                    return;
                };
                match link.transport() {
                    Some(Transport::DataChannel) => self.stats.chunks_over_data_channel += 1,
                    Some(Transport::Relay) | None => self.stats.chunks_over_relay += 1,
                }
                if link.archive {
                    self.stats.chunks_from_archive_peers += 1;
                }
                MeshOutput::StoreChunk {
                    key,
                    index,
                    data,
                    proof,
                    from: link.key,
                }
            }
            TransferOutput::Complete { key } => MeshOutput::AttachmentComplete { key },
            TransferOutput::Unavailable { key } => MeshOutput::AttachmentUnavailable { key },
            TransferOutput::Declined { key } => MeshOutput::AttachmentDeclined { key },
        };
        self.outputs.push_back(output);
    }

    /// Sends a chunk frame, on the data channel, or through the relay. A chunk goes only if the
    /// quota keeps [`RELAY_RESERVE_FOR_HISTORY`] for history frames (else it is left out: the
    /// asker's time-out asks again); the small frames about chunks go as history does.
    fn send_chunk_frame(&mut self, now: UnixMillis, peer: PeerId, frame: &ChunkFrame) {
        let Some(session) = self.sessions_by_peer.get(&peer).copied() else {
            return;
        };
        let bulk = matches!(frame, ChunkFrame::Chunk { .. });
        match self.links.get(&session).and_then(Link::transport) {
            Some(Transport::DataChannel) => {
                let queue_limit = if bulk {
                    LINK_CHUNK_QUEUE_BYTES
                } else {
                    LINK_SEND_QUEUE_BYTES
                };
                self.outputs.push_back(MeshOutput::SendBinaryOnDataChannel {
                    session,
                    bytes: frame.encode(),
                    queue_limit,
                })
            }
            Some(Transport::Relay) => {
                let text = to_base64url(&frame.encode());
                let reserve = if bulk {
                    RELAY_RESERVE_FOR_HISTORY as f64
                } else {
                    0.0
                };
                if self
                    .relay_budget
                    .try_spend_keeping(now, text.len() as f64, reserve)
                {
                    self.outputs
                        .push_back(MeshOutput::ToRelay(ClientInput::PeerFrame {
                            to: session,
                            frame: text,
                        }));
                } else {
                    self.stats.relayed_chunks_held_back += 1;
                }
            }
            None => {}
        }
    }

    pub(super) fn on_peer_frame(&mut self, now: UnixMillis, peer: PeerId, text: &str) {
        match decode_peer_frame(text) {
            Ok(frame) => self.sync(now, SyncInput::Frame { peer, frame }),
            Err(error) => self.refuse_peer(now, peer, &format!("unreadable peer frame: {error}")),
        }
    }

    /// Closes the link to `peer` and refuses its key for the session.
    pub(super) fn refuse_peer(&mut self, now: UnixMillis, peer: PeerId, reason: &str) {
        let Some(session) = self.sessions_by_peer.get(&peer).copied() else {
            return;
        };
        if let Some(key) = self.links.get(&session).map(|link| link.key) {
            if self.refused_keys.len() >= MAX_REFUSED_KEYS {
                self.refused_keys.pop_front();
            }
            self.refused_keys.push_back(key);
            self.outputs.push_back(MeshOutput::Refused {
                key,
                reason: reason.to_owned(),
            });
        }
        self.remove_link(now, session);
        self.offer_links(now);
    }

    /// Feeds the engine and carries out what it asks for.
    pub(super) fn sync(&mut self, now: UnixMillis, input: SyncInput) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        engine.handle(now, input);
        let mut outputs = Vec::new();
        while let Some(output) = engine.poll_output() {
            outputs.push(output);
        }
        for output in outputs {
            self.on_sync_output(now, output);
        }
    }

    pub(super) fn on_sync_output(&mut self, now: UnixMillis, output: SyncOutput) {
        match output {
            SyncOutput::Send { peer, frame } => self.send_to_peer(now, peer, &frame),
            SyncOutput::Load { peer, channel, ids } => {
                self.outputs
                    .push_back(MeshOutput::Load { peer, channel, ids })
            }
            SyncOutput::Store {
                channel,
                envelopes,
                from,
            } => {
                let link = self
                    .sessions_by_peer
                    .get(&from)
                    .and_then(|session| self.links.get_mut(session));
                if let Some(link) = link {
                    link.useful_at = now;
                }
                let link = self
                    .sessions_by_peer
                    .get(&from)
                    .and_then(|session| self.links.get(session));
                let transport = link.and_then(Link::transport).unwrap_or(Transport::Relay);
                let count = envelopes.len() as u64;
                if link.is_some_and(|link| link.archive) {
                    self.stats.envelopes_from_archive_peers += count;
                }
                match transport {
                    Transport::DataChannel => self.stats.envelopes_over_data_channel += count,
                    Transport::Relay => self.stats.envelopes_over_relay += count,
                }
                self.outputs.push_back(MeshOutput::Store {
                    channel,
                    envelopes,
                    transport,
                });
            }
            SyncOutput::Disconnect { peer, reason } => self.refuse_peer(now, peer, &reason),
            SyncOutput::State { channel, state } => {
                if self.present.contains_key(&channel) {
                    self.engine_states.insert(channel, state);
                }
            }
        }
    }

    pub(super) fn send_to_peer(&mut self, now: UnixMillis, peer: PeerId, frame: &PeerToPeer) {
        let Some(session) = self.sessions_by_peer.get(&peer).copied() else {
            return;
        };
        let text = encode(frame);
        match self.links.get(&session).and_then(Link::transport) {
            Some(Transport::DataChannel) => self
                .outputs
                .push_back(MeshOutput::SendOnDataChannel { session, text }),
            Some(Transport::Relay) => {
                if self.relay_budget.try_spend(now, text.len() as f64) {
                    self.outputs
                        .push_back(MeshOutput::ToRelay(ClientInput::PeerFrame {
                            to: session,
                            frame: text,
                        }));
                } else {
                    self.stats.relayed_frames_held_back += 1;
                }
            }
            None => {}
        }
    }
}
