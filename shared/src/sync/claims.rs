//! Who holds what: a peer's claims (reconciliation replies and `have`) believed within bounds,
//! and peers whose requests keep failing stripped of them.

use super::{EnvelopeCheck, Missing, PeerId, SyncEngine};
use crate::channel::ChannelName;
use crate::ids::MessageId;
use crate::peer::MAX_HAVE_IDS;
use crate::time::UnixMillis;
use std::collections::BTreeSet;

impl<C: EnvelopeCheck> SyncEngine<C> {
    /// Records that `peer` holds `ids` (which this member lacks), within the peer's claims;
    /// they may be requested from `not_before` on.
    pub(super) fn note_holder_after(
        &mut self,
        now: UnixMillis,
        not_before: UnixMillis,
        peer: PeerId,
        channel: &ChannelName,
        ids: Vec<MessageId>,
    ) {
        let (max_missing, holders_per_id) = (self.limits.max_missing, self.limits.holders_per_id);
        let claims_per_peer = self.limits.claims_per_peer;
        let newest_possible = now
            .saturating_add_millis(self.relay_ahead_millis)
            .max(self.newest_known)
            .saturating_add_millis(self.limits.future_tolerance_millis);
        let Some(state) = self
            .peers
            .get_mut(&peer)
            .filter(|state| state.claims_suspended_until <= now)
        else {
            return;
        };
        let oldest_wanted = self
            .limits
            .horizon_millis
            .map_or(UnixMillis(0), |horizon| {
                UnixMillis(not_before.0.saturating_sub(horizon))
            })
            .max(self.evicted_up_to.saturating_add_millis(1));
        let Some(sync) = self.channels.get_mut(channel) else {
            return;
        };
        let mut claim = |holders: &mut Vec<PeerId>| {
            if holders.contains(&peer) || holders.len() >= holders_per_id {
                return false;
            }
            if state.claims >= claims_per_peer {
                state.claims_overflowed = true;
                return false;
            }
            state.claims += 1;
            holders.push(peer);
            true
        };
        for id in ids {
            let when = id.timestamp();
            if sync.index.contains(id) || when < oldest_wanted || when > newest_possible {
                continue;
            }
            if let Some(flight) = sync.in_flight.get_mut(&id) {
                claim(&mut flight.missing.holders);
                continue;
            }
            if let Some(missing) = sync.missing.get_mut(&id) {
                if claim(&mut missing.holders) {
                    missing.not_before = missing.not_before.min(not_before);
                    sync.dirty = true;
                }
                continue;
            }
            if sync.missing.len() >= max_missing {
                continue;
            }
            let mut holders = Vec::new();
            if claim(&mut holders) {
                sync.missing.insert(
                    id,
                    Missing {
                        holders,
                        not_before,
                    },
                );
                sync.dirty = true;
            }
        }
    }

    pub(super) fn on_have(
        &mut self,
        now: UnixMillis,
        peer: PeerId,
        channel: ChannelName,
        ids: Vec<MessageId>,
    ) {
        if ids.len() > MAX_HAVE_IDS {
            return self.disconnect(peer, format!("a have frame of {} ids", ids.len()));
        }
        let not_before = now.saturating_add_millis(self.limits.have_grace_millis);
        self.note_holder_after(now, not_before, peer, &channel, ids);
    }

    /// Counts each expired request against its peer. A peer whose requests keep expiring
    /// with nothing delivered claimed ids it does not send (or is cut off): it is struck off
    /// as a holder everywhere, ids nobody else holds are forgotten, and its claims are ignored
    /// for a while.
    pub(super) fn suspend_peers_that_deliver_nothing(
        &mut self,
        now: UnixMillis,
        failed: BTreeSet<(PeerId, UnixMillis)>,
    ) {
        let limit = self.limits.failed_requests_before_suspension;
        let until = now.saturating_add_millis(self.limits.claims_suspension_millis);
        for (peer, _) in failed {
            let Some(state) = self.peers.get_mut(&peer) else {
                continue;
            };
            state.failed_requests += 1;
            if state.failed_requests < limit {
                continue;
            }
            state.failed_requests = 0;
            state.claims = 0;
            state.claims_overflowed = false;
            state.claims_suspended_until = until;
            for sync in self.channels.values_mut() {
                sync.missing.retain(|_, missing| {
                    missing.holders.retain(|holder| *holder != peer);
                    !missing.holders.is_empty()
                });
                for flight in sync.in_flight.values_mut() {
                    flight.missing.holders.retain(|holder| *holder != peer);
                }
                sync.dirty = true;
            }
        }
    }
}
