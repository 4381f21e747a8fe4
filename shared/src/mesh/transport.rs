//! Peer frames over a link's data channel, or through the relay paced to its quota, between
//! the sync engine and the peers; and what happens to a peer that breaks the rules.

use super::{Link, LinkState, MeshOutput, PeerMesh, Transport, MAX_REFUSED_KEYS};
use crate::client::ClientInput;
use crate::codec::{decode_peer_frame, encode};
use crate::frames::{PeerAddress, SessionId};
use crate::peer::PeerToPeer;
use crate::sync::{PeerId, SyncInput, SyncOutput};
use crate::time::UnixMillis;

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
        if let Some(peer) = self.links.get(&from.session).map(|link| link.peer) {
            self.on_peer_frame(now, peer, text);
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
