//! Push: a message new to this member goes in full to a few peers and by id to the others.

use super::{index, release_claims, EnvelopeCheck, PeerId, SyncEngine};
use crate::channel::ChannelName;
use crate::ids::MessageId;
use crate::message::VerifiedEnvelope;
use crate::peer::{PeerToPeer, MAX_HAVE_IDS};

impl<C: EnvelopeCheck> SyncEngine<C> {
    pub(super) fn on_local(&mut self, envelope: VerifiedEnvelope, spread: bool) {
        let channel = envelope.envelope().channel.clone();
        let id = envelope.envelope().id;
        let Some(sync) = self.channels.get_mut(&channel) else {
            return;
        };
        if sync.index.insert(index::item_of(id)) {
            self.newest_known = self.newest_known.max(id.timestamp());
            if let Some(missing) = sync.missing.remove(&id) {
                release_claims(&mut self.peers, &missing.holders);
            }
            if spread {
                self.spread(&channel, &envelope, None);
            }
        }
    }

    /// Pushes a message new to this member to `fanout` random peers of the channel and
    /// announces its id to the others (never back to `source`).
    pub(super) fn spread(
        &mut self,
        channel: &ChannelName,
        envelope: &VerifiedEnvelope,
        source: Option<PeerId>,
    ) {
        let peers = self.shuffled_peers(channel, source);
        let fanout = self.limits.fanout.min(peers.len());
        for peer in &peers[..fanout] {
            self.send(
                *peer,
                PeerToPeer::Envelopes {
                    channel: channel.clone(),
                    envelopes: vec![envelope.envelope().clone()],
                },
            );
        }
        for peer in &peers[fanout..] {
            self.send(
                *peer,
                PeerToPeer::Have {
                    channel: channel.clone(),
                    ids: vec![envelope.envelope().id],
                },
            );
        }
    }

    /// The peers of `channel` other than `source`, in random order.
    pub(super) fn shuffled_peers(
        &mut self,
        channel: &ChannelName,
        source: Option<PeerId>,
    ) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(peer, state)| Some(**peer) != source && state.channels.contains(channel))
            .map(|(peer, _)| *peer)
            .collect();
        peers.sort_unstable();
        for index in 0..peers.len() {
            let other = index + self.random.below(peers.len() - index);
            peers.swap(index, other);
        }
        peers
    }

    /// Announces `ids` to every peer of the channel other than `source` (ids are small, and a
    /// peer left out would wait for the next anti-entropy round to learn of them).
    pub(super) fn offer(&mut self, channel: &ChannelName, ids: &[MessageId], source: PeerId) {
        if ids.is_empty() {
            return;
        }
        let peers = self.shuffled_peers(channel, Some(source));
        for peer in peers {
            for chunk in ids.chunks(MAX_HAVE_IDS) {
                self.send(
                    peer,
                    PeerToPeer::Have {
                        channel: channel.clone(),
                        ids: chunk.to_vec(),
                    },
                );
            }
        }
    }
}
