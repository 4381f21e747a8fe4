//! The relay's only state: who is connected, where, and short-lived memories (recent sends,
//! invite uses, rate limits). Everything here is bounded and lost on restart by design.
//!
//! One mutex guards the state; critical sections are short and never await. Fan-out serialises a
//! frame once and hands each recipient a cheap clone of the bytes through a bounded queue with
//! `try_send`: a full queue marks the recipient a slow consumer, which is then disconnected.

use crate::client_address::ClientAddress;
use crate::config::{RelayConfig, RelayLimits};
use crate::metrics::Metrics;
use crate::rate::TokenBucket;
use crate::send_queue::{QueueBudget, Refused, SendQueue, SendQueueLimits};
use axum::extract::ws::Utf8Bytes;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::codec::encode;
use peerchat_shared::frames::{
    ChannelSummary, ErrorCode, MemberPresence, PeerAddress, PresenceChange, RelayToClient,
    SessionId,
};
use peerchat_shared::identity::{PublicKey, Verifier};
use peerchat_shared::ids::MessageIdGenerator;
use peerchat_shared::limits::{MAX_LISTED_CHANNELS, MAX_LISTED_MEMBERS, MEMBERS_PER_FRAME};
use peerchat_shared::membership::{Profile, Role};
use peerchat_shared::message::{ClientNonce, SealReceipt, VerifiedDraft};
use peerchat_shared::time::UnixMillis;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why the hub refused something; becomes an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What a connection task holds for its registered session.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    pub(crate) id: SessionId,
    pub(crate) send_queue: Arc<SendQueue>,
    /// Cancelled by the hub when the session's queue overflows.
    pub(crate) evicted: CancellationToken,
}

#[derive(Debug)]
struct Session {
    key: PublicKey,
    role: Role,
    address: ClientAddress,
    profile: Option<Profile>,
    channels: BTreeSet<ChannelName>,
    send_queue: Arc<SendQueue>,
    evicted: CancellationToken,
}

impl Session {
    fn presence(&self, id: SessionId) -> MemberPresence {
        MemberPresence {
            key: self.key,
            session: id,
            role: self.role,
            profile: self.profile.clone(),
        }
    }
}

/// Per-key state shared by all of a member's sessions.
#[derive(Debug)]
struct KeyState {
    connections: usize,
    buckets: RateBuckets,
}

/// The rate limits of a key, or of an address (scaled by
/// [`RelayLimits::address_rate_multiple`]). They outlive the connections (see
/// [`HubState::resting_buckets`] and [`HubState::address_buckets`]), so reconnecting does not
/// refill them.
#[derive(Debug)]
struct RateBuckets {
    frames: TokenBucket,
    messages: TokenBucket,
    peer_bytes: TokenBucket,
}

impl RateBuckets {
    fn full(limits: &RelayLimits, now: Instant) -> Self {
        Self::scaled(limits, 1.0, now)
    }

    fn scaled(limits: &RelayLimits, scale: f64, now: Instant) -> Self {
        let bucket =
            |burst: f64, per_second: f64| TokenBucket::full(burst * scale, per_second * scale, now);
        Self {
            frames: bucket(limits.frame_burst, limits.frames_per_second),
            messages: bucket(limits.message_burst, limits.messages_per_second),
            peer_bytes: bucket(limits.peer_burst_bytes, limits.peer_bytes_per_second),
        }
    }

    fn all_full(&mut self, now: Instant) -> bool {
        self.frames.is_full(now) && self.messages.is_full(now) && self.peer_bytes.is_full(now)
    }
}

/// Remembers recent (author, nonce) pairs so a resend gets the original envelope back. It keeps
/// a [`SealReceipt`] per send, not the envelope: a fixed size, whatever the body's.
#[derive(Debug, Default)]
struct RecentSends {
    by_nonce: HashMap<(PublicKey, ClientNonce), SealReceipt>,
    order: VecDeque<(Instant, PublicKey, ClientNonce)>,
}

#[derive(Debug, Default)]
struct HubState {
    next_session: u64,
    sessions: HashMap<SessionId, Session>,
    channels: BTreeMap<ChannelName, BTreeSet<SessionId>>,
    /// Per channel, its members' keys and how many of each key's sessions are in it: the
    /// channel list ranks by distinct keys, which many sessions of one key cannot inflate.
    channel_keys: HashMap<ChannelName, HashMap<PublicKey, usize>>,
    keys: HashMap<PublicKey, KeyState>,
    /// The buckets of keys with no connection left, while any of them is not full again; at
    /// most `max_sessions` keys (beyond that, a key that leaves starts afresh next time).
    resting_buckets: HashMap<PublicKey, RateBuckets>,
    /// The buckets of each address prefix with a session, and of those without one while any
    /// of them is not full again (see [`Hub::rest_address_buckets`]): new keys from one address
    /// share its rates. Loopback has none (see [`ClientAddress::is_loopback`]).
    address_buckets: HashMap<ClientAddress, RateBuckets>,
    connections_per_address: HashMap<ClientAddress, usize>,
    pending_logins: HashMap<ClientAddress, usize>,
    failed_logins: HashMap<ClientAddress, TokenBucket>,
    invite_uses: HashMap<[u8; 16], (u32, UnixMillis)>,
    ids: MessageIdGenerator,
    recent_sends: RecentSends,
}

/// A connection's place among those not logged in yet; freed when dropped.
#[derive(Debug)]
pub(crate) struct PendingLogin {
    hub: Arc<Hub>,
    address: ClientAddress,
}

impl Drop for PendingLogin {
    fn drop(&mut self) {
        self.hub.end_login(self.address);
    }
}

/// Shared by all connection tasks.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) config: RelayConfig,
    pub(crate) relay_key: PublicKey,
    pub(crate) relay_verifier: Verifier,
    pub(crate) metrics: Metrics,
    /// What every session's queue holds, together.
    pub(crate) queue_budget: Arc<QueueBudget>,
    state: Mutex<HubState>,
}

/// Whose rate ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// The session's key (or the session is gone).
    Key,
    /// The address it connects from, shared with other keys there: not this member's doing.
    Address,
}

/// Takes `count` tokens from one bucket of the session's key and the same of its address,
/// or from neither.
fn take_for_session(
    state: &mut HubState,
    id: SessionId,
    count: f64,
    now: Instant,
    bucket: impl Fn(&mut RateBuckets) -> &mut TokenBucket,
) -> Result<(), Shortfall> {
    let Some(session) = state.sessions.get(&id) else {
        return Err(Shortfall::Key);
    };
    let (key, address) = (session.key, session.address);
    let HubState {
        keys,
        address_buckets,
        ..
    } = state;
    let by_key = bucket(&mut keys.get_mut(&key).ok_or(Shortfall::Key)?.buckets);
    if !by_key.has(count, now) {
        return Err(Shortfall::Key);
    }
    if let Some(by_address) = address_buckets.get_mut(&address).map(&bucket) {
        if !by_address.try_take_many(count, now) {
            return Err(Shortfall::Address);
        }
    }
    by_key.try_take_many(count, now);
    Ok(())
}

/// The relay's wall clock.
pub(crate) fn now_millis() -> UnixMillis {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    UnixMillis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

impl Hub {
    pub(crate) fn new(config: RelayConfig) -> Arc<Self> {
        let relay_key = config.signing_key.public_key();
        let relay_verifier = config.signing_key.verifier();
        let limits = &config.limits;
        let queue_budget = Arc::new(QueueBudget::new(
            limits.queued_bytes_total,
            limits.send_queue_bytes / 4,
        ));
        Arc::new(Self {
            config,
            relay_key,
            relay_verifier,
            metrics: Metrics::default(),
            queue_budget,
            state: Mutex::new(HubState {
                next_session: 1,
                ..HubState::default()
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than refusing service would, so keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves a place for a connection that has not logged in yet; `None` when the relay or
    /// this address already has too many such connections.
    pub(crate) fn begin_login(self: &Arc<Self>, address: ClientAddress) -> Option<PendingLogin> {
        let limits = &self.config.limits;
        let mut state = self.state();
        let total: usize = state.pending_logins.values().sum();
        let from_address = state.pending_logins.get(&address).copied().unwrap_or(0);
        if total >= limits.max_pending_logins || from_address >= limits.pending_logins_per_address {
            return None;
        }
        *state.pending_logins.entry(address).or_insert(0) += 1;
        Some(PendingLogin {
            hub: self.clone(),
            address,
        })
    }

    fn end_login(&self, address: ClientAddress) {
        let mut state = self.state();
        if let Some(count) = state.pending_logins.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                state.pending_logins.remove(&address);
            }
        }
    }

    /// Counts a failed login from `address` against its budget. The map is bounded: when it is
    /// full of addresses still within their window, new addresses are not tracked (the
    /// per-connection limits still apply to them).
    pub(crate) fn note_failed_login(&self, address: ClientAddress, now: Instant) {
        let per_minute = self.config.limits.failed_logins_per_minute;
        let capacity = self.config.limits.max_sessions;
        let mut state = self.state();
        let failed_logins = &mut state.failed_logins;
        if !failed_logins.contains_key(&address) && failed_logins.len() >= capacity {
            failed_logins.retain(|_, bucket| !bucket.is_full(now));
            if failed_logins.len() >= capacity {
                return;
            }
        }
        let bucket = failed_logins
            .entry(address)
            .or_insert_with(|| TokenBucket::full(per_minute, per_minute / 60.0, now));
        let _within_budget = bucket.try_take(now);
    }

    /// False when `address` used up its failed-login budget.
    pub(crate) fn may_attempt_login(&self, address: ClientAddress, now: Instant) -> bool {
        let mut state = self.state();
        match state.failed_logins.get_mut(&address) {
            Some(bucket) => bucket.has_token(now),
            None => true,
        }
    }

    /// Records one use of an invite; refuses when its budget is spent.
    pub(crate) fn use_invite(
        &self,
        invite_id: [u8; 16],
        max_uses: u32,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), Refusal> {
        let mut state = self.state();
        state.invite_uses.retain(|_, (_, expiry)| *expiry > now);
        let (uses, _) = state
            .invite_uses
            .entry(invite_id)
            .or_insert((0, expires_at));
        if *uses >= max_uses {
            return Err(Refusal::new(
                ErrorCode::InviteUsedUp,
                "this invite has no uses left",
            ));
        }
        *uses += 1;
        Ok(())
    }

    /// Gives back a use [`Hub::use_invite`] took, for a login that was not admitted after all.
    pub(crate) fn refund_invite(&self, invite_id: [u8; 16]) {
        if let Some((uses, _)) = self.state().invite_uses.get_mut(&invite_id) {
            *uses = uses.saturating_sub(1);
        }
    }

    /// Admits an authenticated connection as a session, within the connection limits.
    pub(crate) fn register(
        &self,
        key: PublicKey,
        role: Role,
        address: ClientAddress,
        profile: Option<Profile>,
        now: Instant,
    ) -> Result<SessionHandle, Refusal> {
        let limits = &self.config.limits;
        let mut state = self.state();
        if state.sessions.len() >= limits.max_sessions {
            return Err(Refusal::new(
                ErrorCode::TooManyConnections,
                "the relay is full",
            ));
        }
        let per_key = state
            .keys
            .get(&key)
            .map_or(0, |key_state| key_state.connections);
        if per_key >= limits.connections_per_key {
            return Err(Refusal::new(
                ErrorCode::TooManyConnections,
                "too many connections for this key",
            ));
        }
        let per_address = state
            .connections_per_address
            .get(&address)
            .copied()
            .unwrap_or(0);
        if per_address >= limits.connections_per_address {
            return Err(Refusal::new(
                ErrorCode::TooManyConnections,
                "too many connections from this address",
            ));
        }
        // A key is either connected or resting, never both.
        let resting = state.resting_buckets.remove(&key);
        let key_state = state.keys.entry(key).or_insert_with(|| KeyState {
            connections: 0,
            buckets: resting.unwrap_or_else(|| RateBuckets::full(limits, now)),
        });
        key_state.connections += 1;
        *state.connections_per_address.entry(address).or_insert(0) += 1;
        if !address.is_loopback() {
            let scale = limits.address_rate_multiple;
            state
                .address_buckets
                .entry(address)
                .or_insert_with(|| RateBuckets::scaled(limits, scale, now));
        }
        let id = SessionId(state.next_session);
        state.next_session += 1;
        let send_queue_limits = SendQueueLimits {
            frames: limits.send_queue_frames,
            bytes: limits.send_queue_bytes,
            forwarded_bytes: limits.forwarded_queue_bytes,
        };
        let send_queue = Arc::new(SendQueue::new(send_queue_limits, self.queue_budget.clone()));
        let evicted = CancellationToken::new();
        state.sessions.insert(
            id,
            Session {
                key,
                role,
                address,
                profile,
                channels: BTreeSet::new(),
                send_queue: send_queue.clone(),
                evicted: evicted.clone(),
            },
        );
        self.count_sessions(&state);
        Ok(SessionHandle {
            id,
            send_queue,
            evicted,
        })
    }

    /// Leaves every channel the session is in, telling the others; it keeps its slots.
    pub(crate) fn leave_all(&self, id: SessionId) {
        let mut state = self.state();
        self.leave_all_locked(&mut state, id);
    }

    fn leave_all_locked(&self, state: &mut HubState, id: SessionId) {
        let channels: Vec<ChannelName> = match state.sessions.get(&id) {
            Some(session) => session.channels.iter().cloned().collect(),
            None => return,
        };
        for channel in channels {
            self.leave_locked(state, id, &channel);
        }
    }

    /// Removes a session: leaves its channels (telling the others) and frees its slots.
    pub(crate) fn unregister(&self, id: SessionId) {
        let mut state = self.state();
        self.leave_all_locked(&mut state, id);
        let Some(session) = state.sessions.remove(&id) else {
            return;
        };
        if let Some(key_state) = state.keys.get_mut(&session.key) {
            key_state.connections -= 1;
            if key_state.connections == 0 {
                if let Some(key_state) = state.keys.remove(&session.key) {
                    self.rest_buckets(&mut state, session.key, key_state.buckets);
                }
            }
        }
        if let Some(count) = state.connections_per_address.get_mut(&session.address) {
            *count -= 1;
            if *count == 0 {
                state.connections_per_address.remove(&session.address);
                self.rest_address_buckets(&mut state);
            }
        }
        self.count_sessions(&state);
    }

    /// Keeps the buckets of addresses with no session left while they refill, at most about
    /// `max_sessions / 2` of them: past that, those full again are forgotten, and if a quarter
    /// remains, all of them (each pass is paid for by as many closed sessions).
    fn rest_address_buckets(&self, state: &mut HubState) {
        let max = self.config.limits.max_sessions;
        let HubState {
            address_buckets,
            connections_per_address,
            ..
        } = state;
        let resting = |buckets: &HashMap<ClientAddress, RateBuckets>| {
            buckets.len().saturating_sub(connections_per_address.len())
        };
        if resting(address_buckets) <= max / 2 {
            return;
        }
        let now = Instant::now();
        address_buckets.retain(|address, buckets| {
            connections_per_address.contains_key(address) || !buckets.all_full(now)
        });
        if resting(address_buckets) > max / 4 {
            address_buckets.retain(|address, _| connections_per_address.contains_key(address));
        }
    }

    /// Keeps the buckets of a key whose last connection closed, unless they are full already.
    fn rest_buckets(&self, state: &mut HubState, key: PublicKey, mut buckets: RateBuckets) {
        let now = Instant::now();
        if buckets.all_full(now) {
            return;
        }
        let resting = &mut state.resting_buckets;
        if resting.len() >= self.config.limits.max_sessions {
            resting.retain(|_, buckets| !buckets.all_full(now));
        }
        if resting.len() < self.config.limits.max_sessions {
            resting.insert(key, buckets);
        }
    }

    fn count_sessions(&self, state: &HubState) {
        let virtual_clients = state
            .sessions
            .values()
            .filter(|session| session.role == Role::Virtual)
            .count();
        self.metrics
            .set_sessions(state.sessions.len(), virtual_clients);
        self.queue_budget.set_sessions(state.sessions.len());
    }

    /// Takes a frame token for the session's key and address.
    pub(crate) fn allow_frame(&self, id: SessionId, now: Instant) -> Result<(), Shortfall> {
        let mut state = self.state();
        take_for_session(&mut state, id, 1.0, now, |buckets| &mut buckets.frames)
    }

    /// Takes `bytes` from the quota of the session's key and address for forwarded peer frames.
    pub(crate) fn allow_peer_bytes(
        &self,
        id: SessionId,
        bytes: usize,
        now: Instant,
    ) -> Result<(), Shortfall> {
        let mut state = self.state();
        take_for_session(&mut state, id, bytes as f64, now, |buckets| {
            &mut buckets.peer_bytes
        })
    }

    /// The channel list: configured defaults, then the channels with the most distinct keys
    /// in them (sessions of one key count once).
    pub(crate) fn channel_summaries(&self) -> Vec<ChannelSummary> {
        let state = self.state();
        let summary = |name: &ChannelName, default: bool| {
            let online = state.channels.get(name).map_or(0, BTreeSet::len);
            ChannelSummary {
                name: name.clone(),
                online: u32::try_from(online).unwrap_or(u32::MAX),
                default,
            }
        };
        let defaults = &self.config.default_channels;
        let mut busiest: Vec<(usize, &ChannelName)> = state
            .channel_keys
            .iter()
            .filter(|(name, _)| !defaults.contains(name))
            .map(|(name, keys)| (keys.len(), name))
            .collect();
        busiest.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        defaults
            .iter()
            .map(|name| summary(name, true))
            .chain(busiest.into_iter().map(|(_, name)| summary(name, false)))
            .take(MAX_LISTED_CHANNELS)
            .collect()
    }

    /// Joins a channel; the joiner gets `joined` with everyone there, the others a `presence`.
    pub(crate) fn join(&self, id: SessionId, channel: &ChannelName) -> Result<(), Refusal> {
        let mut state = self.state();
        let session = state.sessions.get(&id).ok_or_else(gone)?;
        if session.channels.contains(channel) {
            // The list again. Its frames beyond the first cost the frame rate, so that one
            // small frame cannot make the relay send a hundred.
            let listed = state
                .channels
                .get(channel)
                .map_or(0, BTreeSet::len)
                .min(MAX_LISTED_MEMBERS);
            let extra_frames = listed.div_ceil(MEMBERS_PER_FRAME).saturating_sub(1);
            let affordable = extra_frames == 0
                || take_for_session(&mut state, id, extra_frames as f64, Instant::now(), |b| {
                    &mut b.frames
                })
                .is_ok();
            if !affordable {
                return Err(Refusal::new(
                    ErrorCode::RateLimited,
                    "joining again sends the whole member list; slow down",
                ));
            }
            return self.send_members_list(&state, id, channel);
        }
        if session.channels.len() >= peerchat_shared::limits::MAX_CHANNELS_PER_SESSION {
            return Err(Refusal::new(
                ErrorCode::TooManyChannels,
                "too many channels joined",
            ));
        }
        let presence = session.presence(id);
        state
            .sessions
            .get_mut(&id)
            .ok_or_else(gone)?
            .channels
            .insert(channel.clone());
        state
            .channels
            .entry(channel.clone())
            .or_default()
            .insert(id);
        *state
            .channel_keys
            .entry(channel.clone())
            .or_default()
            .entry(presence.key)
            .or_default() += 1;
        let frame = RelayToClient::Presence {
            channel: channel.clone(),
            change: PresenceChange::Joined,
            member: presence,
        };
        self.fan_out(&state, channel, Some(id), &frame);
        self.send_members_list(&state, id, channel)
    }

    /// Sends `joined` and then `members` frames, [`MEMBERS_PER_FRAME`] sessions each, listing at
    /// most [`MAX_LISTED_MEMBERS`].
    fn send_members_list(
        &self,
        state: &HubState,
        id: SessionId,
        channel: &ChannelName,
    ) -> Result<(), Refusal> {
        let members: Vec<MemberPresence> = state
            .channels
            .get(channel)
            .into_iter()
            .flatten()
            .filter_map(|member| {
                state
                    .sessions
                    .get(member)
                    .map(|session| session.presence(*member))
            })
            .take(MAX_LISTED_MEMBERS)
            .collect();
        let mut chunks = members.chunks(MEMBERS_PER_FRAME);
        let first = chunks.next().unwrap_or_default().to_vec();
        let joined = RelayToClient::Joined {
            channel: channel.clone(),
            members: first,
        };
        self.deliver(state, id, Utf8Bytes::from(encode(&joined)));
        for chunk in chunks {
            let more = RelayToClient::Members {
                channel: channel.clone(),
                members: chunk.to_vec(),
            };
            self.deliver(state, id, Utf8Bytes::from(encode(&more)));
        }
        Ok(())
    }

    pub(crate) fn leave(&self, id: SessionId, channel: &ChannelName) -> Result<(), Refusal> {
        let mut state = self.state();
        if !state
            .sessions
            .get(&id)
            .ok_or_else(gone)?
            .channels
            .contains(channel)
        {
            return Err(Refusal::new(
                ErrorCode::NotInChannel,
                format!("not in #{channel}"),
            ));
        }
        self.leave_locked(&mut state, id, channel);
        self.deliver(
            &state,
            id,
            Utf8Bytes::from(encode(&RelayToClient::Left {
                channel: channel.clone(),
            })),
        );
        Ok(())
    }

    fn leave_locked(&self, state: &mut HubState, id: SessionId, channel: &ChannelName) {
        let Some(session) = state.sessions.get_mut(&id) else {
            return;
        };
        session.channels.remove(channel);
        let presence = session.presence(id);
        if let Some(members) = state.channels.get_mut(channel) {
            members.remove(&id);
            if members.is_empty() {
                state.channels.remove(channel);
            }
        }
        if let Some(keys) = state.channel_keys.get_mut(channel) {
            if let Some(sessions) = keys.get_mut(&presence.key) {
                *sessions -= 1;
                if *sessions == 0 {
                    keys.remove(&presence.key);
                }
            }
            if keys.is_empty() {
                state.channel_keys.remove(channel);
            }
        }
        let frame = RelayToClient::Presence {
            channel: channel.clone(),
            change: PresenceChange::Left,
            member: presence,
        };
        self.fan_out(state, channel, None, &frame);
    }

    /// Replaces the session's profile and tells every channel it is in.
    pub(crate) fn update_profile(&self, id: SessionId, profile: Profile) -> Result<(), Refusal> {
        let mut state = self.state();
        let session = state.sessions.get_mut(&id).ok_or_else(gone)?;
        session.profile = Some(profile);
        let presence = session.presence(id);
        let channels: Vec<ChannelName> = session.channels.iter().cloned().collect();
        for channel in channels {
            let frame = RelayToClient::Presence {
                channel: channel.clone(),
                change: PresenceChange::Updated,
                member: presence.clone(),
            };
            self.fan_out(&state, &channel, None, &frame);
        }
        Ok(())
    }

    /// Stamps a verified draft and delivers it: `ack` to the sender, `message` to the channel.
    /// A resend of a remembered (author, nonce) gets the original envelope and no fan-out; a
    /// different draft under that nonce is refused.
    pub(crate) fn publish(
        &self,
        id: SessionId,
        draft: VerifiedDraft,
        now: Instant,
    ) -> Result<(), Refusal> {
        let mut state = self.state();
        let session = state.sessions.get(&id).ok_or_else(gone)?;
        let (author, nonce, channel) = (
            *draft.author(),
            draft.draft().nonce,
            draft.draft().channel.clone(),
        );
        if !session.channels.contains(&channel) {
            return Err(Refusal::new(
                ErrorCode::NotInChannel,
                format!("join #{channel} before sending to it"),
            ));
        }
        if let Some(receipt) = state.recent_sends.by_nonce.get(&(author, nonce)) {
            let envelope = draft.reseal(receipt).ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NonceReused,
                    "this nonce was used for another message; pick a fresh one",
                )
            })?;
            let ack = RelayToClient::Ack { envelope };
            self.deliver(&state, id, Utf8Bytes::from(encode(&ack)));
            return Ok(());
        }
        if take_for_session(&mut state, id, 1.0, now, |buckets| &mut buckets.messages).is_err() {
            return Err(Refusal::new(
                ErrorCode::RateLimited,
                "too many messages; slow down",
            ));
        }
        let attachments = draft.draft().body.attachments().len();
        let message_id = state
            .ids
            .next_for_message(now_millis(), rand::random(), attachments)
            .map_err(|_| Refusal::new(ErrorCode::Internal, "id space exhausted"))?;
        let (envelope, receipt) = draft.seal_with_receipt(message_id, &self.config.signing_key);
        self.remember_send(&mut state, now, (author, nonce), receipt);
        self.deliver(
            &state,
            id,
            Utf8Bytes::from(encode(&RelayToClient::Ack {
                envelope: envelope.clone(),
            })),
        );
        self.fan_out(
            &state,
            &channel,
            Some(id),
            &RelayToClient::Message { envelope },
        );
        self.metrics.message_relayed();
        Ok(())
    }

    fn remember_send(
        &self,
        state: &mut HubState,
        now: Instant,
        send: (PublicKey, ClientNonce),
        receipt: SealReceipt,
    ) {
        let limits = &self.config.limits;
        let recent = &mut state.recent_sends;
        while let Some((at, author, nonce)) = recent.order.front().copied() {
            let expired = now.saturating_duration_since(at) > limits.resend_window;
            if !expired && recent.order.len() < limits.resend_memory {
                break;
            }
            recent.order.pop_front();
            recent.by_nonce.remove(&(author, nonce));
        }
        recent.order.push_back((now, send.0, send.1));
        recent.by_nonce.insert(send, receipt);
    }

    /// Passes an opaque signalling payload to another session, with `from` set from ours.
    pub(crate) fn signal(
        &self,
        from: SessionId,
        to: SessionId,
        data: String,
    ) -> Result<(), Refusal> {
        self.pass_on(from, to, |from| RelayToClient::Signal { from, data })
    }

    /// Forwards a peer frame to another session, with `from` set from ours; keeps nothing.
    pub(crate) fn forward_peer_frame(
        &self,
        from: SessionId,
        to: SessionId,
        frame: String,
    ) -> Result<(), Refusal> {
        let bytes = frame.len();
        self.pass_on(from, to, |from| RelayToClient::Peer { from, frame })?;
        self.metrics.peer_bytes_forwarded(bytes);
        Ok(())
    }

    /// Queues for session `to` the frame `frame` makes of the sender's address, if the two share
    /// a channel and `to` is not already receiving more than it reads.
    fn pass_on(
        &self,
        from: SessionId,
        to: SessionId,
        frame: impl FnOnce(PeerAddress) -> RelayToClient,
    ) -> Result<(), Refusal> {
        let state = self.state();
        let sender = state.sessions.get(&from).ok_or_else(gone)?;
        let recipient = state
            .sessions
            .get(&to)
            .filter(|recipient| {
                !recipient.evicted.is_cancelled()
                    && !recipient.channels.is_disjoint(&sender.channels)
            })
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::UnknownPeer,
                    format!("session {} is not online in any of your channels", to.0),
                )
            })?;
        let frame = frame(PeerAddress {
            key: sender.key,
            session: from,
        });
        match recipient
            .send_queue
            .push_forwarded(Utf8Bytes::from(encode(&frame)))
        {
            Ok(()) => {
                self.metrics.frame_queued();
                Ok(())
            }
            Err(Refused::Busy) => Err(Refusal::new(
                ErrorCode::RateLimited,
                format!(
                    "session {} is receiving more than it reads; slow down",
                    to.0
                ),
            )),
            Err(Refused::Full) => {
                self.evict(recipient);
                Ok(())
            }
        }
    }

    /// Serialises once and queues the bytes for every session in the channel except `skip`.
    fn fan_out(
        &self,
        state: &HubState,
        channel: &ChannelName,
        skip: Option<SessionId>,
        frame: &RelayToClient,
    ) {
        let Some(members) = state.channels.get(channel) else {
            return;
        };
        let bytes = Utf8Bytes::from(encode(frame));
        for member in members.iter().filter(|member| Some(**member) != skip) {
            self.deliver(state, *member, bytes.clone());
        }
    }

    /// Queues a frame for session `id` behind those already queued for it.
    pub(crate) fn reply(&self, id: SessionId, frame: &RelayToClient) {
        let state = self.state();
        self.deliver(&state, id, Utf8Bytes::from(encode(frame)));
    }

    /// Queues a frame without waiting; a full queue evicts the session as a slow consumer.
    fn deliver(&self, state: &HubState, id: SessionId, bytes: Utf8Bytes) {
        let Some(session) = state
            .sessions
            .get(&id)
            .filter(|session| !session.evicted.is_cancelled())
        else {
            return;
        };
        match session.send_queue.push(bytes) {
            Ok(()) => self.metrics.frame_queued(),
            Err(_) => self.evict(session),
        }
    }

    /// Drops a slow consumer's queue and tells its task to close it; nothing more is queued
    /// for it, so it counts once in the overflow metric.
    fn evict(&self, session: &Session) {
        self.metrics.queue_overflow();
        session.evicted.cancel();
        session.send_queue.clear();
    }
}

fn gone() -> Refusal {
    Refusal::new(ErrorCode::Internal, "session is closing")
}
