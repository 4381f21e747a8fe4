//! The history sync engine, sans-IO: which peer to ask for what, what to offer whom, what to
//! store. Browser and virtual clients drive the same engine: they feed [`SyncInput`]s with the
//! current time and carry out the [`SyncOutput`]s they poll.
//!
//! - **Pull**: on joining a channel, when a peer connects, and now and then with a random peer,
//!   the two sides reconcile their sets of ids with range-based set reconciliation (negentropy),
//!   which finds every difference, gaps included, in a few round trips without listing
//!   everything. Missing ids are fetched newest first, in batches, from the peers that hold
//!   them, the fastest first, with a time-out and a retry elsewhere.
//! - **Push**: a message new to this peer goes at once to a few random peers (`fanout`) and is
//!   announced by id (`have`) to the others, which ask for it only if no copy came after a grace
//!   period. Ids already held are never asked for twice.
//! - **Peers of last resort**: a peer marked `archive` (an operator's virtual client) is asked
//!   only for what no member holds, and only after [`SyncLimits::archive_grace_millis`] and
//!   once no reconciliation with a member is running, so members serve first.
//! - **Horizon**: an engine with [`SyncLimits::horizon_millis`] (a virtual client's cache window)
//!   never asks for messages older than that, and forgets ids its store evicted.
//! - **Verification**: every envelope is checked before it is stored; a peer that sends a forged
//!   or altered one, or breaks the frame rules, is disconnected and ignored for the session.
//! - **Claims**: what a peer says it holds (`have`, reconciliation) is believed only within
//!   bounds: ids stamped later than [`SyncLimits::future_tolerance_millis`] after the newest
//!   time this member knows (its clock, the relay's, its newest id) are ignored; a peer's
//!   outstanding claims are capped ([`SyncLimits::claims_per_peer`]; the rest are found again
//!   once those are settled); and a peer whose requests expire
//!   [`SyncLimits::failed_requests_before_suspension`] times in a row with nothing delivered
//!   loses every claim and makes none for [`SyncLimits::claims_suspension_millis`] (so a peer
//!   that lies holds others' requests up for seconds, not for good, and one that was only cut
//!   off is believed again later).
//! - **Bounds**: ids in flight per peer, loads per peer, missing ids per channel, claims per
//!   peer, peers remembered as dropped.

mod claims;
mod fetch;
mod gossip;
pub mod index;
mod reconcile;

use crate::budget::Budget;
use crate::channel::ChannelName;
use crate::identity::Verifier;
use crate::ids::MessageId;
use crate::message::{BatchRejection, Envelope, EnvelopeRejected, VerifiedEnvelope};
use crate::peer::{PeerToPeer, MAX_WANT_IDS};
use crate::random::SeededRandom;
use crate::time::UnixMillis;
use index::ChannelIndex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// The engine's name for one link to another member: the mesh numbers each link it makes, so a
/// member who comes back on a new link is a new peer. (The member's key is a `PublicKey`, its
/// relay connection a `SessionId`, and the relay names the two together as a `PeerAddress`.)
pub type PeerId = u64;

/// Checks an envelope before it is stored. The relay's [`Verifier`] is the real one.
pub trait EnvelopeCheck {
    fn check(&self, envelope: Envelope) -> Result<VerifiedEnvelope, EnvelopeRejected>;

    /// Checks a peer's frame of envelopes; all pass or the first failure is named.
    fn check_all(&self, envelopes: Vec<Envelope>) -> Result<Vec<VerifiedEnvelope>, BatchRejection> {
        BatchRejection::check_each(envelopes, |envelope| self.check(envelope))
    }
}

impl EnvelopeCheck for Verifier {
    fn check(&self, envelope: Envelope) -> Result<VerifiedEnvelope, EnvelopeRejected> {
        envelope.verify(self)
    }

    fn check_all(&self, envelopes: Vec<Envelope>) -> Result<Vec<VerifiedEnvelope>, BatchRejection> {
        Envelope::verify_all(envelopes, self)
    }
}

/// The engine's tunables; [`SyncLimits::default`] is what clients use.
#[derive(Debug, Clone)]
pub struct SyncLimits {
    /// Peers a new message is pushed to in full; the others get its id.
    pub fanout: usize,
    /// Ids requested from one peer and not answered yet.
    pub ids_in_flight_per_peer: usize,
    /// Want frames of one peer being answered at once; more are ignored (the peer retries).
    pub loads_per_peer: usize,
    /// A request is given up after three of the peer's measured round trips, within these.
    pub min_request_timeout_millis: u64,
    pub request_timeout_millis: u64,
    /// How long an id learnt from `have` waits for a pushed copy before it is requested.
    pub have_grace_millis: u64,
    /// Reconciliation with one random peer per channel this often.
    pub anti_entropy_millis: u64,
    /// Ids known to be missing per channel; beyond it, later ones are found by the next
    /// reconciliation.
    pub max_missing: usize,
    /// Holders remembered per missing id.
    pub holders_per_id: usize,
    /// Peers remembered as dropped for the session.
    pub max_dropped_peers: usize,
    /// How long an id only archive peers hold waits for a member to turn up holding it.
    pub archive_grace_millis: u64,
    /// Messages older than this are neither asked for nor kept track of (`None`: all history).
    pub horizon_millis: Option<u64>,
    /// Reconciliation steps answered per peer: a steady rate and a burst. Queries beyond them
    /// are ignored (the peer's reconciliation times out), so a peer cannot keep this member
    /// busy computing answers.
    pub reconcile_steps_per_second: f64,
    pub reconcile_step_burst: f64,
    /// Missing ids one peer may be recorded as holding at a time (requested ones included).
    pub claims_per_peer: usize,
    /// Claimed ids stamped more than this after the latest of the clock, the relay's clock
    /// ([`SyncInput::RelayClock`]) and the newest id this member holds are ignored: the relay
    /// stamps no id in the future.
    pub future_tolerance_millis: u64,
    /// A peer whose requests expire this many times in a row, with nothing it was asked for
    /// delivered in between, loses its claims and makes none for `claims_suspension_millis`.
    pub failed_requests_before_suspension: u32,
    pub claims_suspension_millis: u64,
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            fanout: 4,
            ids_in_flight_per_peer: 2 * MAX_WANT_IDS,
            loads_per_peer: 4,
            min_request_timeout_millis: 300,
            request_timeout_millis: 4_000,
            have_grace_millis: 400,
            anti_entropy_millis: 30_000,
            max_missing: 200_000,
            holders_per_id: 4,
            max_dropped_peers: 1_024,
            archive_grace_millis: 2_000,
            horizon_millis: None,
            reconcile_steps_per_second: 16.0,
            reconcile_step_burst: 256.0,
            claims_per_peer: 20_000,
            future_tolerance_millis: 10 * 60 * 1_000,
            failed_requests_before_suspension: 3,
            claims_suspension_millis: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncInput {
    /// This member is in `channel`, whose store holds `ids`.
    Join {
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    Leave {
        channel: ChannelName,
    },
    /// A peer is reachable (data channel open, or relay fallback) and is in `channels`. For a
    /// peer already up, `channels` are added to those it is in. An `archive` peer (a virtual
    /// client) is a peer of last resort.
    PeerUp {
        peer: PeerId,
        channels: Vec<ChannelName>,
        archive: bool,
    },
    PeerDown {
        peer: PeerId,
    },
    Frame {
        peer: PeerId,
        frame: PeerToPeer,
    },
    /// The envelopes read from the store for a [`SyncOutput::Load`].
    Loaded {
        peer: PeerId,
        channel: ChannelName,
        envelopes: Vec<Envelope>,
    },
    /// A message that reached the store another way (live from the relay). With `spread`, it is
    /// offered onward; without, only remembered (the relay delivered it to every online member).
    Local {
        envelope: Box<VerifiedEnvelope>,
        spread: bool,
    },
    /// The store no longer holds these ids (evicted from a bounded cache, oldest first):
    /// neither they nor anything older are asked for again.
    Forget {
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    /// The relay's clock read `relay_time` at the time this input is handled (the issue time of
    /// the certificate it gave at login): what the relay may have stamped since is not "in the
    /// future" even when this member's clock is behind.
    RelayClock {
        relay_time: UnixMillis,
    },
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutput {
    Send {
        peer: PeerId,
        frame: PeerToPeer,
    },
    /// Read these envelopes of `channel` from the store and hand them back as
    /// [`SyncInput::Loaded`] (ids the store lacks are left out).
    Load {
        peer: PeerId,
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    /// Store these verified envelopes, new to this member; `from` sent them.
    Store {
        channel: ChannelName,
        envelopes: Vec<VerifiedEnvelope>,
        from: PeerId,
    },
    /// Close the connection to this peer; `reason` is for the log.
    Disconnect {
        peer: PeerId,
        reason: String,
    },
    /// The channel's history state changed, for the UI.
    State {
        channel: ChannelName,
        state: HistoryState,
    },
}

/// What the member is told about a channel's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HistoryState {
    /// No peer yet, and links to this many members of the channel are being made. The mesh
    /// reports this ([`crate::mesh::PeerMesh`]); the engine, which sees only linked peers, never does.
    Connecting { peers: usize },
    /// Fetching from this many peers.
    Syncing { peers: usize },
    /// Reconciled with at least one peer and nothing missing.
    UpToDate,
    /// No peer is reachable: history may be incomplete.
    NoPeers,
}

#[derive(Debug)]
struct Missing {
    holders: Vec<PeerId>,
    not_before: UnixMillis,
}

/// A requested id: who was asked, when, and what is known of it should the request fail.
#[derive(Debug)]
struct InFlight {
    peer: PeerId,
    sent_at: UnixMillis,
    deadline: UnixMillis,
    missing: Missing,
}

#[derive(Debug, Default)]
struct ChannelSync {
    index: ChannelIndex,
    /// Ids known to be missing and not requested yet (requested ones are in `in_flight`).
    missing: BTreeMap<MessageId, Missing>,
    in_flight: HashMap<MessageId, InFlight>,
    /// `in_flight`'s ids by deadline, earliest first.
    in_flight_by_time: BTreeSet<(UnixMillis, MessageId)>,
    /// Something changed that may let more ids be requested.
    dirty: bool,
    /// The earliest `not_before` still in the future at the last pass over `missing`.
    earliest_waiting: Option<UnixMillis>,
    /// When a reconciliation was last started to find holders for ids that had none left.
    last_holder_search: Option<UnixMillis>,
    /// Reconciliations this member started and when their last step was sent; one whose
    /// answer is lost is given up after the request time-out.
    reconciling_with: BTreeMap<PeerId, UnixMillis>,
    /// Peers whose reconciliation was abandoned for lack of an answer: a late reply from one of
    /// them is ignored (it was asked for), not held against it.
    abandoned_with: BTreeSet<PeerId>,
    reconciled_once: bool,
    next_anti_entropy: Option<UnixMillis>,
    announced: Option<HistoryState>,
}

#[derive(Debug)]
struct PeerState {
    channels: BTreeSet<ChannelName>,
    archive: bool,
    ids_in_flight: usize,
    loads_pending: usize,
    /// Smoothed time from a `want` to its envelopes.
    round_trip_millis: u64,
    /// Reconciliation steps this member still answers for the peer; others are ignored.
    reconcile_steps: Budget,
    /// Missing or requested ids recorded with this peer among their holders.
    claims: usize,
    /// Claims were turned away for lack of room: reconcile again once they are settled.
    claims_overflowed: bool,
    /// Requests to this peer that expired since it last delivered something asked of it.
    failed_requests: u32,
    /// Its claims are ignored until then.
    claims_suspended_until: UnixMillis,
}

impl PeerState {
    fn new(archive: bool, channels: BTreeSet<ChannelName>, reconcile_steps: Budget) -> Self {
        Self {
            channels,
            archive,
            ids_in_flight: 0,
            loads_pending: 0,
            round_trip_millis: 200,
            reconcile_steps,
            claims: 0,
            claims_overflowed: false,
            failed_requests: 0,
            claims_suspended_until: UnixMillis(0),
        }
    }
}

/// The holders of an id that is no longer missing give back their claim on it.
fn release_claims(peers: &mut HashMap<PeerId, PeerState>, holders: &[PeerId]) {
    for holder in holders {
        if let Some(state) = peers.get_mut(holder) {
            state.claims = state.claims.saturating_sub(1);
        }
    }
}

/// A channel's sync state is dropped: its requests and the claims on its missing ids go.
fn release_channel(peers: &mut HashMap<PeerId, PeerState>, sync: ChannelSync) {
    for flight in sync.in_flight.into_values() {
        if let Some(state) = peers.get_mut(&flight.peer) {
            state.ids_in_flight = state.ids_in_flight.saturating_sub(1);
        }
        release_claims(peers, &flight.missing.holders);
    }
    for missing in sync.missing.into_values() {
        release_claims(peers, &missing.holders);
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct SyncEngine<C> {
    check: C,
    limits: SyncLimits,
    random: SeededRandom,
    channels: HashMap<ChannelName, ChannelSync>,
    peers: HashMap<PeerId, PeerState>,
    dropped: VecDeque<PeerId>,
    outputs: VecDeque<SyncOutput>,
    /// Nothing older is asked for: the newest time the store evicted.
    evicted_up_to: UnixMillis,
    /// The newest id time this member holds or was handed by the relay.
    newest_known: UnixMillis,
    /// How far the relay's clock is ahead of this member's, as last heard.
    relay_ahead_millis: u64,
}

impl<C: EnvelopeCheck> SyncEngine<C> {
    pub fn new(check: C, limits: SyncLimits, random_seed: u64) -> Self {
        Self {
            check,
            limits,
            random: SeededRandom::new(random_seed),
            channels: HashMap::new(),
            peers: HashMap::new(),
            dropped: VecDeque::new(),
            outputs: VecDeque::new(),
            evicted_up_to: UnixMillis(0),
            newest_known: UnixMillis(0),
            relay_ahead_millis: 0,
        }
    }

    pub fn poll_output(&mut self) -> Option<SyncOutput> {
        self.outputs.pop_front()
    }

    /// When to feed [`SyncInput::Timeout`] next, if ever.
    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        let timeout = self.limits.request_timeout_millis;
        self.channels
            .values()
            .flat_map(|sync| {
                let oldest_request = sync
                    .in_flight_by_time
                    .first()
                    .map(|(deadline, _)| *deadline);
                let reconciling = sync
                    .reconciling_with
                    .values()
                    .map(move |last_step| last_step.saturating_add_millis(timeout));
                let waiting = sync.earliest_waiting.filter(|_| !self.peers.is_empty());
                oldest_request
                    .into_iter()
                    .chain(reconciling)
                    .chain(waiting)
                    .chain(sync.next_anti_entropy)
            })
            .min()
    }

    /// How many ids of `channel` this member holds.
    pub fn held(&self, channel: &ChannelName) -> usize {
        self.channels
            .get(channel)
            .map_or(0, |sync| sync.index.len())
    }

    /// How many ids of `channel` this member knows it lacks (requested ones included).
    pub fn missing(&self, channel: &ChannelName) -> usize {
        self.channels
            .get(channel)
            .map_or(0, |sync| sync.missing.len() + sync.in_flight.len())
    }

    pub fn handle(&mut self, now: UnixMillis, input: SyncInput) {
        match input {
            SyncInput::Join { channel, ids } => self.on_join(now, channel, ids),
            SyncInput::Leave { channel } => {
                if let Some(sync) = self.channels.remove(&channel) {
                    release_channel(&mut self.peers, sync);
                }
            }
            SyncInput::PeerUp {
                peer,
                channels,
                archive,
            } => self.on_peer_up(now, peer, channels, archive),
            SyncInput::PeerDown { peer } => self.forget_peer(peer),
            SyncInput::Frame { peer, frame } => self.on_frame(now, peer, frame),
            SyncInput::Loaded {
                peer,
                channel,
                envelopes,
            } => self.on_loaded(peer, channel, envelopes),
            SyncInput::Local { envelope, spread } => self.on_local(*envelope, spread),
            SyncInput::Forget { channel, ids } => {
                if let Some(newest) = ids.iter().map(|id| id.timestamp()).max() {
                    self.evicted_up_to = self.evicted_up_to.max(newest);
                }
                if let Some(sync) = self.channels.get_mut(&channel) {
                    for id in ids {
                        sync.index.remove(id);
                    }
                }
            }
            SyncInput::RelayClock { relay_time } => {
                self.relay_ahead_millis = relay_time.0.saturating_sub(now.0);
            }
            SyncInput::Timeout => self.on_timeout(now),
        }
        self.reconcile_after_overflow(now);
        self.request_missing(now);
        self.announce_states();
    }

    fn send(&mut self, peer: PeerId, frame: PeerToPeer) {
        self.outputs.push_back(SyncOutput::Send { peer, frame });
    }

    fn on_join(&mut self, now: UnixMillis, channel: ChannelName, ids: Vec<MessageId>) {
        let mut sync = ChannelSync::default();
        for id in ids {
            self.newest_known = self.newest_known.max(id.timestamp());
            sync.index.insert(index::item_of(id));
        }
        sync.next_anti_entropy = Some(now.saturating_add_millis(self.limits.anti_entropy_millis));
        if let Some(replaced) = self.channels.insert(channel.clone(), sync) {
            release_channel(&mut self.peers, replaced);
        }
        let peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, state)| state.channels.contains(&channel))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in peers {
            self.start_reconciliation(now, peer, &channel);
        }
    }

    fn on_peer_up(
        &mut self,
        now: UnixMillis,
        peer: PeerId,
        channels: Vec<ChannelName>,
        archive: bool,
    ) {
        if self.dropped.contains(&peer) {
            return;
        }
        let channels: BTreeSet<ChannelName> = channels.into_iter().collect();
        if let Some(state) = self.peers.get_mut(&peer) {
            let added: Vec<ChannelName> = channels
                .into_iter()
                .filter(|channel| state.channels.insert(channel.clone()))
                .collect();
            for channel in added {
                self.start_reconciliation(now, peer, &channel);
            }
            return;
        }
        let reconcile_steps = Budget::full(
            self.limits.reconcile_step_burst,
            self.limits.reconcile_steps_per_second,
            now,
        );
        self.peers.insert(
            peer,
            PeerState::new(archive, channels.clone(), reconcile_steps),
        );
        for channel in channels {
            if self.channels.contains_key(&channel) {
                self.start_reconciliation(now, peer, &channel);
            }
        }
    }

    /// Drops `peer` for the rest of the session.
    fn disconnect(&mut self, peer: PeerId, reason: String) {
        self.forget_peer(peer);
        if self.dropped.len() >= self.limits.max_dropped_peers {
            self.dropped.pop_front();
        }
        self.dropped.push_back(peer);
        self.outputs
            .push_back(SyncOutput::Disconnect { peer, reason });
    }

    fn forget_peer(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        for sync in self.channels.values_mut() {
            let abandoned: Vec<(UnixMillis, MessageId)> = sync
                .in_flight
                .iter()
                .filter(|(_, flight)| flight.peer == peer)
                .map(|(id, flight)| (flight.deadline, *id))
                .collect();
            for (deadline, id) in abandoned {
                sync.in_flight_by_time.remove(&(deadline, id));
                if let Some(flight) = sync.in_flight.remove(&id) {
                    sync.missing.insert(id, flight.missing);
                }
            }
            sync.reconciling_with.remove(&peer);
            sync.abandoned_with.remove(&peer);
            for missing in sync.missing.values_mut() {
                missing.holders.retain(|holder| *holder != peer);
            }
            sync.dirty = true;
        }
    }

    /// Frames about a channel this member is not in, or the peer is not in (as the relay's
    /// presence says), are ignored: a peer learns nothing of other channels' histories.
    fn on_frame(&mut self, now: UnixMillis, peer: PeerId, frame: PeerToPeer) {
        let peer_is_there = self
            .peers
            .get(&peer)
            .is_some_and(|state| state.channels.contains(frame.channel()));
        if !peer_is_there || !self.channels.contains_key(frame.channel()) {
            return;
        }
        match frame {
            PeerToPeer::ReconcileQuery { channel, message } => {
                let within_budget = self
                    .peers
                    .get_mut(&peer)
                    .is_some_and(|state| state.reconcile_steps.try_spend(now, 1.0));
                if within_budget {
                    self.on_reconcile_query(peer, channel, message);
                }
            }
            PeerToPeer::ReconcileReply { channel, message } => {
                self.on_reconcile_reply(now, peer, channel, message)
            }
            PeerToPeer::Want { channel, ids } => self.on_want(peer, channel, ids),
            PeerToPeer::Have { channel, ids } => self.on_have(now, peer, channel, ids),
            PeerToPeer::Envelopes { channel, envelopes } => {
                self.on_envelopes(now, peer, channel, envelopes)
            }
        }
    }

    fn on_timeout(&mut self, now: UnixMillis) {
        let timeout = self.limits.request_timeout_millis;
        let mut expired: Vec<PeerId> = Vec::new();
        // One failure per request (a `want` batch shares its deadline), not per id.
        let mut failed_requests: BTreeSet<(PeerId, UnixMillis)> = BTreeSet::new();
        for sync in self.channels.values_mut() {
            let reconciling = sync.reconciling_with.len();
            let abandoned = &mut sync.abandoned_with;
            sync.reconciling_with.retain(|peer, last_step| {
                let waiting = last_step.saturating_add_millis(timeout) > now;
                if !waiting {
                    abandoned.insert(*peer);
                }
                waiting
            });
            if sync.reconciling_with.len() != reconciling
                || sync.earliest_waiting.is_some_and(|at| at <= now)
            {
                sync.dirty = true;
            }
            while let Some(&(deadline, id)) = sync.in_flight_by_time.first() {
                if deadline > now {
                    break;
                }
                sync.in_flight_by_time.pop_first();
                sync.dirty = true;
                let Some(mut flight) = sync.in_flight.remove(&id) else {
                    continue;
                };
                expired.push(flight.peer);
                failed_requests.insert((flight.peer, deadline));
                if sync.index.contains(id) {
                    // It came another way meanwhile.
                    release_claims(&mut self.peers, &flight.missing.holders);
                    continue;
                }
                // The slow peer is not asked for this id again, unless it is the only one known
                // to hold it (the request or its answer may just have been lost).
                let holders = &mut flight.missing.holders;
                if holders.len() > 1 && holders.contains(&flight.peer) {
                    holders.retain(|holder| *holder != flight.peer);
                    release_claims(&mut self.peers, &[flight.peer]);
                }
                if !holders.is_empty() {
                    sync.missing.insert(id, flight.missing);
                }
            }
        }
        for peer in expired {
            if let Some(state) = self.peers.get_mut(&peer) {
                state.ids_in_flight = state.ids_in_flight.saturating_sub(1);
                state.round_trip_millis = state.round_trip_millis.saturating_mul(2).min(timeout);
            }
        }
        self.suspend_peers_that_deliver_nothing(now, failed_requests);
        self.anti_entropy(now);
    }

    fn announce_states(&mut self) {
        let mut changes = Vec::new();
        for (channel, sync) in &mut self.channels {
            let peers: HashSet<PeerId> = self
                .peers
                .iter()
                .filter(|(_, state)| state.channels.contains(channel))
                .map(|(peer, _)| *peer)
                .collect();
            let state = if peers.is_empty() {
                HistoryState::NoPeers
            } else if !sync.missing.is_empty()
                || !sync.in_flight.is_empty()
                || !sync.reconciling_with.is_empty()
                || !sync.reconciled_once
            {
                let fetching = peers
                    .iter()
                    .filter(|peer| self.peers.get(peer).is_some_and(|p| p.ids_in_flight > 0))
                    .count();
                HistoryState::Syncing {
                    peers: fetching.max(sync.reconciling_with.len()).max(1),
                }
            } else {
                HistoryState::UpToDate
            };
            if sync.announced != Some(state) {
                sync.announced = Some(state);
                changes.push((channel.clone(), state));
            }
        }
        for (channel, state) in changes {
            self.outputs.push_back(SyncOutput::State { channel, state });
        }
    }
}
