//! Fetching missing ids from their holders, newest first, and serving and checking envelopes.

use super::{
    index, release_claims, ChannelSync, EnvelopeCheck, InFlight, Missing, PeerId, PeerState,
    SyncEngine, SyncLimits, SyncOutput,
};
use crate::channel::ChannelName;
use crate::ids::MessageId;
use crate::message::{BatchRejection, Envelope};
use crate::peer::{envelope_size_bound, PeerToPeer, MAX_WANT_IDS, TARGET_ENVELOPES_FRAME_BYTES};
use crate::time::UnixMillis;
use std::collections::{BTreeMap, HashMap};

impl<C: EnvelopeCheck> SyncEngine<C> {
    pub(super) fn on_want(&mut self, peer: PeerId, channel: ChannelName, ids: Vec<MessageId>) {
        if ids.len() > MAX_WANT_IDS {
            return self.disconnect(peer, format!("a want frame of {} ids", ids.len()));
        }
        let loads_per_peer = self.limits.loads_per_peer;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.loads_pending >= loads_per_peer {
            return;
        }
        let Some(sync) = self.channels.get(&channel) else {
            return;
        };
        let held: Vec<MessageId> = ids
            .into_iter()
            .filter(|id| sync.index.contains(*id))
            .collect();
        if held.is_empty() {
            return;
        }
        state.loads_pending += 1;
        self.outputs.push_back(SyncOutput::Load {
            peer,
            channel,
            ids: held,
        });
    }

    pub(super) fn on_loaded(
        &mut self,
        peer: PeerId,
        channel: ChannelName,
        envelopes: Vec<Envelope>,
    ) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.loads_pending = state.loads_pending.saturating_sub(1);
        for frame in pack_envelopes(&channel, envelopes) {
            self.send(peer, frame);
        }
    }

    pub(super) fn on_envelopes(
        &mut self,
        now: UnixMillis,
        peer: PeerId,
        channel: ChannelName,
        envelopes: Vec<Envelope>,
    ) {
        if let Some(stray) = envelopes
            .iter()
            .find(|envelope| envelope.channel != channel)
        {
            let reason = format!("envelope {} of another channel", stray.id);
            return self.disconnect(peer, reason);
        }
        // Envelopes already held are set aside before any signature is checked: replaying them
        // costs the sender, not this member.
        let Some(sync) = self.channels.get(&channel) else {
            return;
        };
        let (held, envelopes): (Vec<Envelope>, Vec<Envelope>) = envelopes
            .into_iter()
            .partition(|envelope| sync.index.contains(envelope.id));
        for envelope in held {
            self.note_arrival(now, peer, &channel, envelope.id);
        }
        if envelopes.is_empty() {
            return;
        }
        let verified = match self.check.check_all(envelopes) {
            Ok(verified) => verified,
            Err(BatchRejection { id, reason }) => {
                return self.disconnect(peer, format!("envelope {id}: {reason}"))
            }
        };
        let mut fresh = Vec::new();
        for verified in verified {
            let id = verified.envelope().id;
            let requested = self.note_arrival(now, peer, &channel, id);
            let Some(sync) = self.channels.get_mut(&channel) else {
                return;
            };
            if sync.index.insert(index::item_of(id)) {
                self.newest_known = self.newest_known.max(id.timestamp());
                if let Some(missing) = sync.missing.remove(&id) {
                    release_claims(&mut self.peers, &missing.holders);
                }
                fresh.push((verified, requested));
            }
        }
        if fresh.is_empty() {
            return;
        }
        // Pushed messages are new: pass them on. Fetched ones are history: offer their ids to
        // the other peers, which fetch what they lack.
        let mut fetched = Vec::new();
        for (envelope, requested) in &fresh {
            if *requested {
                fetched.push(envelope.envelope().id);
            } else {
                self.spread(&channel, envelope, Some(peer));
            }
        }
        self.offer(&channel, &fetched, peer);
        let fresh = fresh.into_iter().map(|(envelope, _)| envelope).collect();
        self.outputs.push_back(SyncOutput::Store {
            channel,
            envelopes: fresh,
            from: peer,
        });
    }

    /// Settles the request for `id`, if one was in flight (then true), and learns the speed of
    /// the peer asked; `from` brought the envelope.
    pub(super) fn note_arrival(
        &mut self,
        now: UnixMillis,
        from: PeerId,
        channel: &ChannelName,
        id: MessageId,
    ) -> bool {
        let Some(sync) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(flight) = sync.in_flight.remove(&id) else {
            return false;
        };
        sync.in_flight_by_time.remove(&(flight.deadline, id));
        sync.dirty = true;
        release_claims(&mut self.peers, &flight.missing.holders);
        if let Some(state) = self.peers.get_mut(&flight.peer) {
            state.ids_in_flight = state.ids_in_flight.saturating_sub(1);
            let sample = now.0.saturating_sub(flight.sent_at.0);
            state.round_trip_millis = (state.round_trip_millis * 7 + sample) / 8;
            if flight.peer == from {
                state.failed_requests = 0;
            }
        }
        true
    }

    /// Asks holders for missing ids, newest first, the fastest peer with room first.
    pub(super) fn request_missing(&mut self, now: UnixMillis) {
        let channels: Vec<ChannelName> = self.channels.keys().cloned().collect();
        let mut without_holders = Vec::new();
        for channel in channels {
            let Some(sync) = self.channels.get_mut(&channel) else {
                continue;
            };
            if !std::mem::take(&mut sync.dirty) {
                continue;
            }
            let plan = plan_requests(sync, &self.peers, &self.limits, now);
            sync.earliest_waiting = plan.look_again_at;
            if plan.some_without_holders {
                without_holders.push(channel.clone());
            }
            for (peer, ids) in plan.batches {
                self.request(now, &channel, peer, ids);
            }
        }
        for channel in without_holders {
            self.search_holders(now, &channel);
        }
    }

    /// Moves `ids` of `channel` from missing to in flight and asks `peer` for them.
    fn request(
        &mut self,
        now: UnixMillis,
        channel: &ChannelName,
        peer: PeerId,
        ids: Vec<MessageId>,
    ) {
        let round_trip = self.peers.get(&peer).map_or(0, |p| p.round_trip_millis);
        let deadline = now.saturating_add_millis((3 * round_trip).clamp(
            self.limits.min_request_timeout_millis,
            self.limits.request_timeout_millis,
        ));
        let Some(sync) = self.channels.get_mut(channel) else {
            return;
        };
        for id in &ids {
            let Some(missing) = sync.missing.remove(id) else {
                continue;
            };
            let flight = InFlight {
                peer,
                sent_at: now,
                deadline,
                missing,
            };
            sync.in_flight.insert(*id, flight);
            sync.in_flight_by_time.insert((deadline, *id));
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.ids_in_flight += ids.len();
        }
        for chunk in ids.chunks(MAX_WANT_IDS) {
            self.outputs.push_back(SyncOutput::Send {
                peer,
                frame: PeerToPeer::Want {
                    channel: channel.clone(),
                    ids: chunk.to_vec(),
                },
            });
        }
    }
}

/// Envelopes frames of about [`TARGET_ENVELOPES_FRAME_BYTES`] each, at least one envelope per
/// frame, in the order given.
fn pack_envelopes(channel: &ChannelName, envelopes: Vec<Envelope>) -> Vec<PeerToPeer> {
    let mut frames = Vec::new();
    let mut current: Vec<Envelope> = Vec::new();
    let mut size = 0;
    for envelope in envelopes {
        let bound = envelope_size_bound(&envelope);
        if !current.is_empty() && size + bound > TARGET_ENVELOPES_FRAME_BYTES {
            frames.push(std::mem::take(&mut current));
            size = 0;
        }
        size += bound;
        current.push(envelope);
    }
    if !current.is_empty() {
        frames.push(current);
    }
    frames
        .into_iter()
        .map(|envelopes| PeerToPeer::Envelopes {
            channel: channel.clone(),
            envelopes,
        })
        .collect()
}

/// What one pass over a channel's missing ids decided.
struct RequestPlan {
    batches: BTreeMap<PeerId, Vec<MessageId>>,
    /// When the pass should run again though nothing changed (an id's wait ends, say).
    look_again_at: Option<UnixMillis>,
    /// Some ids are missing with no holder left.
    some_without_holders: bool,
}

/// Chooses, newest id first, the holder to ask for each missing id: members before archives
/// (which wait out their grace and any member's reconciliation), then the fastest with room.
/// Ids whose holders are all busy are held up; past a few batches' worth of them the pass stops,
/// so it costs O(capacity), not O(missing).
fn plan_requests(
    sync: &ChannelSync,
    peers: &HashMap<PeerId, PeerState>,
    limits: &SyncLimits,
    now: UnixMillis,
) -> RequestPlan {
    let capacity = limits.ids_in_flight_per_peer;
    let mut with_room = peers
        .values()
        .filter(|state| state.ids_in_flight < capacity)
        .count();
    // Archives wait while a member may still turn out to hold what they hold.
    let member_reconciling = sync
        .reconciling_with
        .keys()
        .any(|peer| peers.get(peer).is_some_and(|state| !state.archive));
    let mut plan = RequestPlan {
        batches: BTreeMap::new(),
        look_again_at: None,
        some_without_holders: false,
    };
    let wake_at = |at: UnixMillis, plan: &mut RequestPlan| {
        plan.look_again_at = Some(plan.look_again_at.map_or(at, |earlier| earlier.min(at)));
    };
    let mut held_up = 0;
    for (id, missing) in sync.missing.iter().rev() {
        if with_room == 0 || held_up >= 4 * capacity {
            with_room = 0;
            break;
        }
        if missing.not_before > now {
            wake_at(missing.not_before, &mut plan);
            continue;
        }
        plan.some_without_holders |= missing.holders.is_empty();
        let archives_from = missing
            .not_before
            .saturating_add_millis(limits.archive_grace_millis);
        let archives_may_serve = !member_reconciling && archives_from <= now;
        match best_holder(
            sync,
            peers,
            &plan.batches,
            missing,
            capacity,
            archives_may_serve,
        ) {
            Choice::Ask(holder) => {
                let in_flight = peers.get(&holder).map_or(0, |state| state.ids_in_flight);
                let batch = plan.batches.entry(holder).or_default();
                batch.push(*id);
                if in_flight + batch.len() >= capacity {
                    with_room -= 1;
                }
            }
            // Looked at again when the grace ends, or when the member's reconciliation ends or
            // expires (which marks the channel dirty).
            Choice::WaitForArchives if archives_from > now => wake_at(archives_from, &mut plan),
            Choice::WaitForArchives => {}
            Choice::AllBusy => held_up += 1,
        }
    }
    if with_room == 0 {
        // Stopping early leaves the next wait unknown: look again soon after.
        plan.look_again_at = Some(now.saturating_add_millis(limits.have_grace_millis));
    }
    plan
}

enum Choice {
    Ask(PeerId),
    /// Only archives hold it, and they do not serve yet.
    WaitForArchives,
    /// Every holder that may serve has no room.
    AllBusy,
}

fn best_holder(
    sync: &ChannelSync,
    peers: &HashMap<PeerId, PeerState>,
    batches: &BTreeMap<PeerId, Vec<MessageId>>,
    missing: &Missing,
    capacity: usize,
    archives_may_serve: bool,
) -> Choice {
    // A reconciliation reveals ids oldest first; waiting for it to finish lets the newest be
    // fetched first.
    let holders = missing
        .holders
        .iter()
        .filter(|holder| !sync.reconciling_with.contains_key(holder))
        .filter_map(|holder| peers.get(holder).map(|state| (*holder, state)));
    let mut archives_waited_for = false;
    let best = holders
        .filter(|(_, state)| {
            let waits = state.archive && !archives_may_serve;
            archives_waited_for |= waits;
            !waits
        })
        .filter(|(holder, state)| {
            state.ids_in_flight + batches.get(holder).map_or(0, Vec::len) < capacity
        })
        .min_by_key(|(holder, state)| (state.archive, state.round_trip_millis, *holder));
    match best {
        Some((holder, _)) => Choice::Ask(holder),
        None if archives_waited_for => Choice::WaitForArchives,
        None => Choice::AllBusy,
    }
}
