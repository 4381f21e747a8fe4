//! Pull by set reconciliation (negentropy): starting one, answering queries within a peer's
//! budget, learning holders from replies, and the rounds that look for what no one claimed.

use super::index::message_id_of;
use super::{EnvelopeCheck, PeerId, SyncEngine};
use crate::channel::ChannelName;
use crate::ids::MessageId;
use crate::peer::{NegentropyMessage, PeerToPeer, MAX_HAVE_IDS, MAX_RECONCILE_BYTES};
use crate::time::UnixMillis;
use negentropy::Negentropy;

impl<C: EnvelopeCheck> SyncEngine<C> {
    pub(super) fn start_reconciliation(
        &mut self,
        now: UnixMillis,
        peer: PeerId,
        channel: &ChannelName,
    ) {
        let Some(sync) = self.channels.get_mut(channel) else {
            return;
        };
        let Ok(mut negentropy) =
            Negentropy::borrowed(sync.index.sorted(), MAX_RECONCILE_BYTES as u64)
        else {
            return;
        };
        let Ok(message) = negentropy.initiate() else {
            return;
        };
        sync.reconciling_with.insert(peer, now);
        sync.abandoned_with.remove(&peer);
        self.send(
            peer,
            PeerToPeer::ReconcileQuery {
                channel: channel.clone(),
                message: NegentropyMessage(message),
            },
        );
    }

    pub(super) fn on_reconcile_query(
        &mut self,
        peer: PeerId,
        channel: ChannelName,
        query: NegentropyMessage,
    ) {
        let Some(sync) = self.channels.get_mut(&channel) else {
            return;
        };
        let answer = Negentropy::borrowed(sync.index.sorted(), MAX_RECONCILE_BYTES as u64)
            .and_then(|mut negentropy| negentropy.reconcile(&query.0));
        match answer {
            Ok(message) => self.send(
                peer,
                PeerToPeer::ReconcileReply {
                    channel,
                    message: NegentropyMessage(message),
                },
            ),
            Err(error) => self.disconnect(peer, format!("unreadable reconcile query: {error:?}")),
        }
    }

    pub(super) fn on_reconcile_reply(
        &mut self,
        now: UnixMillis,
        peer: PeerId,
        channel: ChannelName,
        reply: NegentropyMessage,
    ) {
        let Some(sync) = self.channels.get_mut(&channel) else {
            return;
        };
        if !sync.reconciling_with.contains_key(&peer) {
            if sync.abandoned_with.contains(&peer) {
                return;
            }
            return self.disconnect(peer, "a reconcile reply nobody asked for".into());
        }
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let next = Negentropy::borrowed(sync.index.sorted(), MAX_RECONCILE_BYTES as u64).and_then(
            |mut negentropy| {
                negentropy.set_initiator();
                negentropy.reconcile_with_ids(&reply.0, &mut have, &mut need)
            },
        );
        let next = match next {
            Ok(next) => next,
            Err(error) => {
                return self.disconnect(peer, format!("unreadable reconcile reply: {error:?}"))
            }
        };
        let needed: Vec<MessageId> = need.iter().map(message_id_of).collect();
        self.note_holder_after(now, now, peer, &channel, needed);
        let they_lack: Vec<MessageId> = have.iter().map(message_id_of).collect();
        for chunk in they_lack.chunks(MAX_HAVE_IDS) {
            self.send(
                peer,
                PeerToPeer::Have {
                    channel: channel.clone(),
                    ids: chunk.to_vec(),
                },
            );
        }
        let Some(sync) = self.channels.get_mut(&channel) else {
            return;
        };
        match next {
            Some(message) => {
                sync.reconciling_with.insert(peer, now);
                self.send(
                    peer,
                    PeerToPeer::ReconcileQuery {
                        channel,
                        message: NegentropyMessage(message),
                    },
                )
            }
            None => {
                sync.reconciling_with.remove(&peer);
                sync.reconciled_once = true;
                sync.dirty = true;
                // No peer known holds these (their holders left, or lied): forget them until a
                // later reconciliation finds them again.
                sync.missing
                    .retain(|_, missing| !missing.holders.is_empty());
            }
        }
    }

    /// A peer whose claims overflowed and are all settled now is reconciled with again, to
    /// find what it holds beyond them.
    pub(super) fn reconcile_after_overflow(&mut self, now: UnixMillis) {
        let settled: Vec<PeerId> = self
            .peers
            .iter_mut()
            .filter(|(_, state)| state.claims_overflowed && state.claims == 0)
            .map(|(peer, state)| {
                state.claims_overflowed = false;
                *peer
            })
            .collect();
        for peer in settled {
            let channels: Vec<ChannelName> = self.peers[&peer].channels.iter().cloned().collect();
            for channel in channels {
                let idle = self
                    .channels
                    .get(&channel)
                    .is_some_and(|sync| !sync.reconciling_with.contains_key(&peer));
                if idle {
                    self.start_reconciliation(now, peer, &channel);
                }
            }
        }
    }

    /// Reconciles each channel with one random peer, every `anti_entropy_millis`.
    pub(super) fn anti_entropy(&mut self, now: UnixMillis) {
        let due: Vec<ChannelName> = self
            .channels
            .iter()
            .filter(|(_, sync)| sync.next_anti_entropy.is_some_and(|at| at <= now))
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in due {
            let mut peers: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, state)| state.channels.contains(&channel))
                .map(|(peer, _)| *peer)
                .collect();
            peers.sort_unstable();
            if !peers.is_empty() {
                let peer = peers[self.random.below(peers.len())];
                self.start_reconciliation(now, peer, &channel);
            }
            let next = now.saturating_add_millis(self.limits.anti_entropy_millis);
            if let Some(sync) = self.channels.get_mut(&channel) {
                sync.next_anti_entropy = Some(next);
            }
        }
    }

    /// Some missing ids have no holder left (they timed out or went away): reconcile with a
    /// random peer now rather than at the next anti-entropy round, at most once per time-out.
    pub(super) fn search_holders(&mut self, now: UnixMillis, channel: &ChannelName) {
        let timeout = self.limits.request_timeout_millis;
        let Some(sync) = self.channels.get_mut(channel) else {
            return;
        };
        let recently = sync
            .last_holder_search
            .is_some_and(|at| at.saturating_add_millis(timeout) > now);
        if recently || !sync.reconciling_with.is_empty() {
            return;
        }
        sync.last_holder_search = Some(now);
        sync.earliest_waiting = Some(
            now.saturating_add_millis(timeout)
                .min(sync.earliest_waiting.unwrap_or(UnixMillis(u64::MAX))),
        );
        let peers = self.shuffled_peers(channel, None);
        if let Some(peer) = peers.first() {
            self.start_reconciliation(now, *peer, channel);
        }
    }
}
