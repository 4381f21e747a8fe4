//! The member's side of the relay protocol as a sans-IO state machine: login, the relay-key pin,
//! channels and presence, the outbox, verification of everything delivered, and reconnecting.
//!
//! A driver (the browser's WebSocket, or a virtual client's tokio-tungstenite) feeds it
//! [`ClientInput`]s with the current time and carries out the [`ClientOutput`]s it polls, in
//! order, before handling the next input. [`ClientSession::poll_timeout`] says when to feed it
//! [`ClientInput::Timeout`].

use crate::channel::ChannelName;
use crate::codec::{decode_relay_frame, encode};
use crate::frames::{
    ChannelSummary, ClientToRelay, ErrorCode, IceServer, Login, MemberPresence, PeerAddress,
    PresenceChange, RelayToClient, SessionId,
};
use crate::identity::{PublicKey, SecretKey, Verifier};
use crate::ids::MessageId;
use crate::limits::MAX_CHANNELS_PER_SESSION;
use crate::login::sign_login;
use crate::membership::{DisplayName, InviteToken, MembershipCertificate, Profile, Role};
use crate::message::{ClientNonce, Draft, Envelope, MessageBody, VerifiedEnvelope};
use crate::random::SeededRandom;
use crate::time::UnixMillis;
use crate::PROTOCOL_VERSION;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// The first reconnect waits about this long; each failure doubles it up to [`MAX_BACKOFF_MILLIS`].
pub const FIRST_BACKOFF_MILLIS: u64 = 500;
pub const MAX_BACKOFF_MILLIS: u64 = 30_000;
/// A connection that has not been welcomed this long after opening is given up and retried.
pub const LOGIN_TIMEOUT_MILLIS: u64 = 15_000;
/// After the relay refuses a send for its rate, the outbox is offered again this much later.
pub const RATE_LIMITED_RESEND_MILLIS: u64 = 2_000;
/// Most unsent messages kept; beyond this, sending is refused with a clear error.
pub const MAX_OUTBOX_ENTRIES: usize = 1_000;

/// What a member wrote that the relay has not acknowledged yet. Drivers persist it, so it
/// survives a reload, and hand it back in [`ClientConfig::outbox`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub channel: ChannelName,
    pub nonce: ClientNonce,
    pub body: MessageBody,
    pub queued_at: UnixMillis,
}

/// What a session starts from: the member's key and what the driver kept from earlier visits.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub key: SecretKey,
    pub display_name: Option<DisplayName>,
    /// The relay key pinned at first contact, if this relay was met before.
    pub pinned_relay: Option<PublicKey>,
    pub certificate: Option<MembershipCertificate>,
    /// An invite from a join link, used when there is no certificate yet.
    pub invite: Option<InviteToken>,
    pub outbox: Vec<OutboxEntry>,
    /// Channels known from earlier visits, listed before the relay answers.
    pub known_channels: Vec<ChannelName>,
    /// Seeds the jitter that spreads the reconnects of many clients apart.
    pub random_seed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientInput {
    /// The WebSocket is open.
    SocketOpened,
    /// A text frame arrived.
    Frame(String),
    /// The WebSocket closed or failed to open.
    SocketClosed,
    /// The time given by [`ClientSession::poll_timeout`] has come.
    Timeout,
    /// The member sends `body`; `nonce` is 16 fresh random bytes.
    Send {
        channel: ChannelName,
        body: MessageBody,
        nonce: ClientNonce,
    },
    Join(ChannelName),
    SetDisplayName(DisplayName),
    /// A WebRTC signalling payload for another session (dropped while offline).
    Signal {
        to: SessionId,
        data: String,
    },
    /// A peer frame for another session, forwarded by the relay (dropped while offline).
    PeerFrame {
        to: SessionId,
        frame: String,
    },
}

/// Another session in a channel, as the peer-to-peer layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelPeer {
    pub address: PeerAddress,
    /// The relay marks the operator's virtual clients: peers of last resort.
    pub role: Role,
}

impl From<&MemberPresence> for ChannelPeer {
    fn from(member: &MemberPresence) -> Self {
        Self {
            address: PeerAddress {
                key: member.key,
                session: member.session,
            },
            role: member.role,
        }
    }
}

/// What the peer-to-peer layer ([`crate::mesh::PeerMesh`]) needs to hear from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerNews {
    /// Logged in as `session` of member `me`, with `role`, at the relay whose key is `relay`.
    Online {
        session: SessionId,
        me: PublicKey,
        role: Role,
        relay: PublicKey,
        ice_servers: Vec<IceServer>,
        /// The relay's clock at login (its certificate's issue time).
        relay_time: UnixMillis,
    },
    /// The relay connection is lost; its session ids mean nothing any more.
    Offline,
    /// In `channel`, with these sessions already there (a join's list may come in parts; the
    /// first part, possibly empty, says the channel was joined).
    Listed {
        channel: ChannelName,
        members: Vec<ChannelPeer>,
    },
    Arrived {
        channel: ChannelName,
        member: ChannelPeer,
    },
    Departed {
        channel: ChannelName,
        session: SessionId,
    },
    Left {
        channel: ChannelName,
    },
    Signal {
        from: PeerAddress,
        data: String,
    },
    PeerFrame {
        from: PeerAddress,
        frame: String,
    },
}

/// What the driver must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Open a WebSocket to the relay.
    Connect,
    /// Close the WebSocket and feed nothing more from it (the session already counts it closed).
    Close,
    /// Send this text frame.
    Transmit(String),
    /// Remember this key as the relay's (first contact).
    PinRelayKey(PublicKey),
    /// Keep this certificate for the next login, or forget the kept one.
    SaveCertificate(Option<MembershipCertificate>),
    /// Keep this profile, whose member signature was checked, to name the member in history.
    SaveProfile(Profile),
    /// Store this verified envelope, then show it. `acknowledged` marks the member's own message
    /// coming back from the relay: remove its nonce from the persisted outbox too.
    Store {
        envelope: VerifiedEnvelope,
        acknowledged: bool,
    },
    OutboxPut(OutboxEntry),
    OutboxRemove(ClientNonce),
    Event(ClientEvent),
    /// For the peer-to-peer layer.
    Peers(PeerNews),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    Online,
    /// Waiting before the next attempt.
    Offline,
    /// The relay cannot be used (its key changed, or it refuses this member): no more attempts.
    Stopped,
}

/// A member online in a channel, once per key however many tabs they have open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub key: PublicKey,
    pub fingerprint: String,
    pub role: Role,
    pub display_name: Option<DisplayName>,
    pub is_me: bool,
}

/// What the UI needs to know, apart from stored messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    Connection {
        state: LinkState,
        /// When offline: how long until the next attempt.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_millis: Option<u64>,
    },
    Welcome {
        session: SessionId,
        role: Role,
        relay: PublicKey,
    },
    /// The relay's channel list as last heard, and the channels this member is in (or asked
    /// to be in): the ones to keep for the next visit.
    Channels {
        channels: Vec<ChannelSummary>,
        joined: Vec<ChannelName>,
    },
    Members {
        channel: ChannelName,
        members: Vec<MemberView>,
    },
    /// A message waiting in the outbox.
    Pending {
        entry: OutboxEntry,
    },
    /// The relay refused a message for good; it left the outbox.
    SendFailed {
        nonce: ClientNonce,
        code: ErrorCode,
        message: String,
    },
    /// Something failed that the member should know about; the session carries on.
    Problem {
        code: Option<ErrorCode>,
        message: String,
    },
    /// The session stopped for good ([`LinkState::Stopped`]); the message says why.
    Stopped {
        message: String,
    },
    InviteMinted {
        token: InviteToken,
    },
}

#[derive(Debug)]
enum Link {
    /// A WebSocket was asked for; it has not opened, or the challenge has not come yet.
    Connecting {
        deadline: UnixMillis,
    },
    AwaitingWelcome {
        relay: Verifier,
        deadline: UnixMillis,
    },
    Online {
        relay: Verifier,
    },
    Offline {
        retry_at: UnixMillis,
    },
    Stopped,
}

/// One member's connection to one relay. See the module documentation.
#[derive(Debug)]
pub struct ClientSession {
    key: SecretKey,
    display_name: Option<DisplayName>,
    pinned_relay: Option<PublicKey>,
    certificate: Option<MembershipCertificate>,
    invite: Option<InviteToken>,
    link: Link,
    failed_attempts: u32,
    /// Channels to be in, joined again after every reconnect: the member's choice and the
    /// relay's defaults, never merely what the relay lists.
    wanted_channels: BTreeSet<ChannelName>,
    /// The relay's channel list, as last heard.
    directory: Vec<ChannelSummary>,
    /// Who is online, per joined channel.
    presence: HashMap<ChannelName, BTreeMap<SessionId, MemberPresence>>,
    outbox: Vec<OutboxEntry>,
    resend_at: Option<UnixMillis>,
    outputs: VecDeque<ClientOutput>,
    jitter: SeededRandom,
}

impl ClientSession {
    /// A session that shows what was kept from earlier visits, then asks to connect.
    pub fn new(now: UnixMillis, config: ClientConfig) -> Self {
        let mut session = Self {
            key: config.key,
            display_name: config.display_name,
            pinned_relay: config.pinned_relay,
            certificate: config.certificate,
            invite: config.invite,
            link: Link::Connecting {
                deadline: UnixMillis(0),
            },
            failed_attempts: 0,
            wanted_channels: config.known_channels.into_iter().collect(),
            directory: Vec::new(),
            presence: HashMap::new(),
            outbox: Vec::new(),
            resend_at: None,
            outputs: VecDeque::new(),
            jitter: SeededRandom::new(config.random_seed),
        };
        session.announce_channels();
        let mut outbox = config.outbox;
        outbox.sort_by_key(|entry| (entry.queued_at, entry.nonce.0));
        for entry in outbox {
            session.event(ClientEvent::Pending {
                entry: entry.clone(),
            });
            session.outbox.push(entry);
        }
        session.connect(now);
        session
    }

    fn connect(&mut self, now: UnixMillis) {
        self.link = Link::Connecting {
            deadline: now.saturating_add_millis(LOGIN_TIMEOUT_MILLIS),
        };
        self.push(ClientOutput::Connect);
        self.announce_link(now);
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    pub fn is_online(&self) -> bool {
        matches!(self.link, Link::Online { .. })
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    /// When to feed [`ClientInput::Timeout`] next, if ever.
    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        let link_deadline = match &self.link {
            Link::Connecting { deadline } | Link::AwaitingWelcome { deadline, .. } => {
                Some(*deadline)
            }
            Link::Offline { retry_at } => Some(*retry_at),
            Link::Online { .. } | Link::Stopped => None,
        };
        let resend = self.resend_at.filter(|_| self.is_online());
        link_deadline.into_iter().chain(resend).min()
    }

    pub fn handle(&mut self, now: UnixMillis, input: ClientInput) {
        match input {
            ClientInput::SocketOpened => {}
            ClientInput::Frame(text) => self.on_frame(now, &text),
            ClientInput::SocketClosed => self.on_closed(now),
            ClientInput::Timeout => self.on_timeout(now),
            ClientInput::Send {
                channel,
                body,
                nonce,
            } => self.on_send(now, channel, body, nonce),
            ClientInput::Join(channel) => self.on_join(channel),
            ClientInput::SetDisplayName(name) => self.on_set_display_name(now, name),
            ClientInput::Signal { to, data } => {
                self.transmit_online(&ClientToRelay::Signal { to, data })
            }
            ClientInput::PeerFrame { to, frame } => {
                self.transmit_online(&ClientToRelay::Peer { to, frame })
            }
        }
    }

    fn transmit_online(&mut self, frame: &ClientToRelay) {
        if matches!(self.link, Link::Online { .. }) {
            self.transmit(frame);
        }
    }

    fn news(&mut self, news: PeerNews) {
        self.push(ClientOutput::Peers(news));
    }

    fn push(&mut self, output: ClientOutput) {
        self.outputs.push_back(output);
    }

    fn event(&mut self, event: ClientEvent) {
        self.push(ClientOutput::Event(event));
    }

    fn transmit(&mut self, frame: &ClientToRelay) {
        self.push(ClientOutput::Transmit(encode(frame)));
    }

    fn announce_link(&mut self, now: UnixMillis) {
        let (state, retry_in_millis) = match &self.link {
            Link::Connecting { .. } | Link::AwaitingWelcome { .. } => (LinkState::Connecting, None),
            Link::Online { .. } => (LinkState::Online, None),
            Link::Offline { retry_at } => {
                (LinkState::Offline, Some(retry_at.0.saturating_sub(now.0)))
            }
            Link::Stopped => (LinkState::Stopped, None),
        };
        self.event(ClientEvent::Connection {
            state,
            retry_in_millis,
        });
    }

    fn on_timeout(&mut self, now: UnixMillis) {
        match &self.link {
            Link::Offline { retry_at } if *retry_at <= now => self.connect(now),
            Link::Connecting { deadline } | Link::AwaitingWelcome { deadline, .. }
                if *deadline <= now =>
            {
                self.event(ClientEvent::Problem {
                    code: None,
                    message: "The relay did not answer the login in time.".into(),
                });
                self.push(ClientOutput::Close);
                self.go_offline(now);
            }
            _ => {}
        }
        if self.resend_at.is_some_and(|at| at <= now) && self.is_online() {
            self.resend_at = None;
            self.flush_outbox();
        }
    }

    fn on_closed(&mut self, now: UnixMillis) {
        if !matches!(self.link, Link::Stopped | Link::Offline { .. }) {
            self.go_offline(now);
        }
    }

    /// Waits before the next attempt: about [`FIRST_BACKOFF_MILLIS`], doubling per failure.
    fn go_offline(&mut self, now: UnixMillis) {
        if matches!(self.link, Link::Online { .. }) {
            self.news(PeerNews::Offline);
        }
        let channels: Vec<ChannelName> =
            self.presence.drain().map(|(channel, _)| channel).collect();
        for channel in channels {
            self.event(ClientEvent::Members {
                channel,
                members: vec![],
            });
        }
        let random = self.jitter.next_u64();
        let ceiling = FIRST_BACKOFF_MILLIS
            .saturating_mul(1 << self.failed_attempts.min(16))
            .min(MAX_BACKOFF_MILLIS);
        let delay = ceiling / 2 + random % (ceiling / 2 + 1);
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        self.link = Link::Offline {
            retry_at: now.saturating_add_millis(delay),
        };
        self.announce_link(now);
    }

    fn stop(&mut self, now: UnixMillis, message: String) {
        if matches!(self.link, Link::Online { .. }) {
            self.news(PeerNews::Offline);
        }
        self.link = Link::Stopped;
        self.push(ClientOutput::Close);
        self.event(ClientEvent::Stopped { message });
        self.announce_link(now);
    }

    fn on_frame(&mut self, now: UnixMillis, text: &str) {
        let frame = match decode_relay_frame(text) {
            Ok(frame) => frame,
            Err(error) => {
                self.event(ClientEvent::Problem {
                    code: Some(error.code()),
                    message: format!("The relay sent a frame this client cannot read: {error}"),
                });
                return;
            }
        };
        match std::mem::replace(&mut self.link, Link::Stopped) {
            Link::Connecting { deadline } => {
                self.link = Link::Connecting { deadline };
                self.on_frame_before_login(now, frame, deadline);
            }
            Link::AwaitingWelcome { relay, deadline } => {
                self.on_frame_awaiting_welcome(now, frame, relay, deadline)
            }
            Link::Online { relay } => {
                self.link = Link::Online { relay };
                self.on_frame_online(now, frame);
            }
            other @ (Link::Offline { .. } | Link::Stopped) => self.link = other,
        }
    }

    fn on_frame_before_login(
        &mut self,
        now: UnixMillis,
        frame: RelayToClient,
        deadline: UnixMillis,
    ) {
        let RelayToClient::Challenge {
            protocol,
            relay,
            nonce,
        } = frame
        else {
            return self.on_frame_online_only(frame);
        };
        if protocol != PROTOCOL_VERSION {
            let message = format!(
                "The relay speaks protocol version {protocol}; this client speaks version {PROTOCOL_VERSION}."
            );
            return self.stop(now, message);
        }
        match self.pinned_relay {
            Some(pinned) if pinned != relay => {
                let message = format!(
                    "The relay now presents key {} ({}), but this browser first met it with key {} ({}). It may be another server posing as it; nothing was sent to it.",
                    relay,
                    relay.fingerprint(),
                    pinned,
                    pinned.fingerprint()
                );
                return self.stop(now, message);
            }
            Some(_) => {}
            None => {
                self.pinned_relay = Some(relay);
                self.push(ClientOutput::PinRelayKey(relay));
            }
        }
        let Ok(verifier) = relay.verifier() else {
            return self.stop(now, "The relay's key is not a valid Ed25519 key.".into());
        };
        let login = Login {
            protocol: PROTOCOL_VERSION,
            key: self.key.public_key(),
            signature: sign_login(&self.key, &relay, &nonce),
            certificate: self.certificate.clone(),
            invite: self
                .certificate
                .is_none()
                .then(|| self.invite.clone())
                .flatten(),
            profile: self.signed_profile(&relay, now),
        };
        self.transmit(&ClientToRelay::Login(Box::new(login)));
        self.link = Link::AwaitingWelcome {
            relay: verifier,
            deadline,
        };
    }

    fn signed_profile(&self, relay: &PublicKey, now: UnixMillis) -> Option<Profile> {
        let name = self.display_name.clone()?;
        Some(Profile::sign(&self.key, relay, name, now))
    }

    fn on_frame_awaiting_welcome(
        &mut self,
        now: UnixMillis,
        frame: RelayToClient,
        relay: Verifier,
        deadline: UnixMillis,
    ) {
        match frame {
            RelayToClient::Welcome {
                session,
                role,
                certificate,
                channels,
                ice_servers,
            } => {
                self.news(PeerNews::Online {
                    session,
                    me: self.key.public_key(),
                    role,
                    relay: relay.public_key(),
                    ice_servers,
                    relay_time: certificate.issued_at,
                });
                self.link = Link::Online { relay };
                self.on_welcome(now, session, role, certificate, channels);
            }
            RelayToClient::Error { code, message, .. } => {
                self.link = Link::AwaitingWelcome { relay, deadline };
                self.on_login_refused(now, code, message);
            }
            other => {
                self.link = Link::AwaitingWelcome { relay, deadline };
                self.on_frame_online_only(other);
            }
        }
    }

    fn on_login_refused(&mut self, now: UnixMillis, code: ErrorCode, message: String) {
        match code {
            ErrorCode::InvalidCredential if self.certificate.is_some() => {
                // An expired or revoked certificate: forget it and try again without it (an open
                // relay issues a new one; an invite-only relay says so).
                self.certificate = None;
                self.push(ClientOutput::SaveCertificate(None));
                self.event(ClientEvent::Problem {
                    code: Some(code),
                    message,
                });
            }
            ErrorCode::NotAdmitted
            | ErrorCode::InvalidCredential
            | ErrorCode::InviteUsedUp
            | ErrorCode::Banned
            | ErrorCode::UnsupportedVersion => {
                self.stop(now, format!("The relay refused this member: {message}"))
            }
            _ => self.event(ClientEvent::Problem {
                code: Some(code),
                message,
            }),
        }
    }

    fn on_welcome(
        &mut self,
        now: UnixMillis,
        session: SessionId,
        role: Role,
        certificate: MembershipCertificate,
        channels: Vec<ChannelSummary>,
    ) {
        self.failed_attempts = 0;
        self.invite = None;
        if self.certificate.as_ref() != Some(&certificate) {
            self.certificate = Some(certificate.clone());
            self.push(ClientOutput::SaveCertificate(Some(certificate)));
        }
        let relay = match &self.link {
            Link::Online { relay } => relay.public_key(),
            _ => return,
        };
        self.announce_link(now);
        self.event(ClientEvent::Welcome {
            session,
            role,
            relay,
        });
        let defaults = channels.iter().filter(|summary| summary.default);
        self.wanted_channels
            .extend(defaults.map(|summary| summary.name.clone()));
        self.directory = channels;
        self.announce_channels();
        let wanted: Vec<ChannelName> = self
            .wanted_channels
            .iter()
            .take(MAX_CHANNELS_PER_SESSION)
            .cloned()
            .collect();
        for channel in wanted {
            self.transmit(&ClientToRelay::Join { channel });
        }
        self.flush_outbox();
    }

    fn flush_outbox(&mut self) {
        let Some(relay) = self.pinned_relay else {
            return;
        };
        let drafts: Vec<ClientToRelay> = self
            .outbox
            .iter()
            .map(|entry| ClientToRelay::Send {
                draft: Draft::sign(
                    &self.key,
                    &relay,
                    entry.channel.clone(),
                    entry.nonce,
                    entry.body.clone(),
                ),
            })
            .collect();
        for frame in &drafts {
            self.transmit(frame);
        }
    }

    /// Frames that mean the same whenever they come; anything else out of turn is ignored.
    fn on_frame_online_only(&mut self, frame: RelayToClient) {
        if let RelayToClient::Error { code, message, .. } = frame {
            self.event(ClientEvent::Problem {
                code: Some(code),
                message,
            });
        }
    }

    fn on_frame_online(&mut self, now: UnixMillis, frame: RelayToClient) {
        match frame {
            RelayToClient::Channels { channels } => {
                self.directory = channels;
                self.announce_channels();
            }
            RelayToClient::Joined { channel, members } => {
                self.presence.insert(channel.clone(), BTreeMap::new());
                self.add_members(channel, members);
            }
            RelayToClient::Members { channel, members } => self.add_members(channel, members),
            RelayToClient::Presence {
                channel,
                change,
                member,
            } => self.on_presence(channel, change, member),
            RelayToClient::Left { channel } => {
                self.news(PeerNews::Left {
                    channel: channel.clone(),
                });
                self.presence.remove(&channel);
                self.wanted_channels.remove(&channel);
                self.announce_channels();
                self.announce_members(channel);
            }
            RelayToClient::Message { envelope } => self.on_envelope(envelope, false),
            RelayToClient::Ack { envelope } => self.on_envelope(envelope, true),
            RelayToClient::Error {
                code,
                message,
                nonce,
            } => self.on_error(now, code, message, nonce),
            RelayToClient::Invite { token } => self.event(ClientEvent::InviteMinted { token }),
            RelayToClient::Signal { from, data } => self.news(PeerNews::Signal { from, data }),
            RelayToClient::Peer { from, frame } => self.news(PeerNews::PeerFrame { from, frame }),
            RelayToClient::Challenge { .. }
            | RelayToClient::Welcome { .. }
            | RelayToClient::Pong => {}
        }
    }

    fn add_members(&mut self, channel: ChannelName, members: Vec<MemberPresence>) {
        let Some(online) = self.presence.get_mut(&channel) else {
            return;
        };
        let addresses = members.iter().map(ChannelPeer::from).collect();
        let profiles: Vec<Profile> = members.iter().filter_map(|m| m.profile.clone()).collect();
        for member in members {
            online.insert(member.session, member);
        }
        self.news(PeerNews::Listed {
            channel: channel.clone(),
            members: addresses,
        });
        self.save_profiles(profiles);
        self.announce_members(channel);
    }

    fn on_presence(
        &mut self,
        channel: ChannelName,
        change: PresenceChange,
        member: MemberPresence,
    ) {
        let Some(online) = self.presence.get_mut(&channel) else {
            return;
        };
        let peer = ChannelPeer::from(&member);
        let mut profiles = Vec::new();
        let news = match change {
            PresenceChange::Joined | PresenceChange::Updated => {
                profiles.extend(member.profile.clone());
                let arrived = online.insert(member.session, member).is_none();
                arrived.then(|| PeerNews::Arrived {
                    channel: channel.clone(),
                    member: peer,
                })
            }
            PresenceChange::Left => online.remove(&member.session).map(|_| PeerNews::Departed {
                channel: channel.clone(),
                session: peer.address.session,
            }),
        };
        if let Some(news) = news {
            self.news(news);
        }
        self.save_profiles(profiles);
        self.announce_members(channel);
    }

    /// Emits the profiles (of members just listed, arrived or renamed) whose member signature
    /// verifies, so history can name their authors. Members already known are not checked again.
    fn save_profiles(&mut self, profiles: Vec<Profile>) {
        let Some(relay) = self.pinned_relay else {
            return;
        };
        let verified: Vec<Profile> = profiles
            .into_iter()
            .filter(|profile| {
                profile
                    .member
                    .verifier()
                    .is_ok_and(|verifier| profile.verify(&relay, &verifier).is_ok())
            })
            .collect();
        for profile in verified {
            self.push(ClientOutput::SaveProfile(profile));
        }
    }

    fn announce_members(&mut self, channel: ChannelName) {
        let me = self.key.public_key();
        let mut by_key: BTreeMap<PublicKey, MemberView> = BTreeMap::new();
        for member in self
            .presence
            .get(&channel)
            .into_iter()
            .flat_map(|m| m.values())
        {
            by_key.entry(member.key).or_insert_with(|| MemberView {
                key: member.key,
                fingerprint: member.key.fingerprint(),
                role: member.role,
                display_name: member
                    .profile
                    .as_ref()
                    .filter(|profile| profile.member == member.key)
                    .map(|profile| profile.display_name.clone()),
                is_me: member.key == me,
            });
        }
        self.event(ClientEvent::Members {
            channel,
            members: by_key.into_values().collect(),
        });
    }

    fn on_envelope(&mut self, envelope: Envelope, acknowledged: bool) {
        let Link::Online { relay } = &self.link else {
            return;
        };
        let (id, nonce, author) = (envelope.id, envelope.nonce, envelope.author);
        match envelope.verify(relay) {
            Ok(verified) => {
                let own = author == self.key.public_key();
                let was_pending = own && self.remove_from_outbox(&nonce);
                self.push(ClientOutput::Store {
                    envelope: verified,
                    acknowledged: acknowledged || was_pending,
                });
            }
            Err(rejection) => self.event(ClientEvent::Problem {
                code: Some(ErrorCode::BadSignature),
                message: format!("Message {id} was discarded: {rejection}."),
            }),
        }
    }

    fn remove_from_outbox(&mut self, nonce: &ClientNonce) -> bool {
        let before = self.outbox.len();
        self.outbox.retain(|entry| entry.nonce != *nonce);
        before != self.outbox.len()
    }

    fn on_error(
        &mut self,
        now: UnixMillis,
        code: ErrorCode,
        message: String,
        nonce: Option<ClientNonce>,
    ) {
        let Some(nonce) = nonce.filter(|nonce| self.outbox.iter().any(|e| e.nonce == *nonce))
        else {
            return self.event(ClientEvent::Problem {
                code: Some(code),
                message,
            });
        };
        if code == ErrorCode::RateLimited {
            // Still in the outbox: offered again shortly, with the same nonce.
            self.resend_at = Some(now.saturating_add_millis(RATE_LIMITED_RESEND_MILLIS));
            return;
        }
        self.remove_from_outbox(&nonce);
        self.push(ClientOutput::OutboxRemove(nonce));
        self.event(ClientEvent::SendFailed {
            nonce,
            code,
            message,
        });
    }

    fn on_send(
        &mut self,
        now: UnixMillis,
        channel: ChannelName,
        body: MessageBody,
        nonce: ClientNonce,
    ) {
        if let Err(invalid) = body.validate() {
            return self.event(ClientEvent::SendFailed {
                nonce,
                code: ErrorCode::InvalidField,
                message: format!("This message cannot be sent: {invalid}."),
            });
        }
        if self.outbox.len() >= MAX_OUTBOX_ENTRIES {
            return self.event(ClientEvent::SendFailed {
                nonce,
                code: ErrorCode::RateLimited,
                message: format!(
                    "{MAX_OUTBOX_ENTRIES} messages are already waiting to be sent; try again once they are."
                ),
            });
        }
        let entry = OutboxEntry {
            channel,
            nonce,
            body,
            queued_at: now,
        };
        self.outbox.push(entry.clone());
        self.push(ClientOutput::OutboxPut(entry.clone()));
        self.event(ClientEvent::Pending {
            entry: entry.clone(),
        });
        if let (true, Some(relay)) = (self.is_online(), self.pinned_relay) {
            let draft = Draft::sign(&self.key, &relay, entry.channel, entry.nonce, entry.body);
            self.transmit(&ClientToRelay::Send { draft });
        }
    }

    fn on_join(&mut self, channel: ChannelName) {
        if self.wanted_channels.len() >= MAX_CHANNELS_PER_SESSION
            && !self.wanted_channels.contains(&channel)
        {
            return self.event(ClientEvent::Problem {
                code: Some(ErrorCode::TooManyChannels),
                message: format!("A member can be in at most {MAX_CHANNELS_PER_SESSION} channels."),
            });
        }
        if self.wanted_channels.insert(channel.clone()) {
            self.announce_channels();
        }
        if self.is_online() {
            self.transmit(&ClientToRelay::Join { channel });
        }
    }

    fn announce_channels(&mut self) {
        self.event(ClientEvent::Channels {
            channels: self.directory.clone(),
            joined: self.wanted_channels.iter().cloned().collect(),
        });
    }

    fn on_set_display_name(&mut self, now: UnixMillis, name: DisplayName) {
        self.display_name = Some(name);
        if let (true, Some(relay)) = (self.is_online(), self.pinned_relay) {
            if let Some(profile) = self.signed_profile(&relay, now) {
                self.transmit(&ClientToRelay::SetProfile { profile });
            }
        }
    }
}

/// A stored message as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub id: MessageId,
    pub channel: ChannelName,
    pub author: PublicKey,
    pub author_fingerprint: String,
    /// The relay's time for the message (the id's timestamp).
    pub sent_at: UnixMillis,
    pub nonce: ClientNonce,
    pub body: MessageBody,
}

impl From<&Envelope> for MessageView {
    fn from(envelope: &Envelope) -> Self {
        Self {
            id: envelope.id,
            channel: envelope.channel.clone(),
            author: envelope.author,
            author_fingerprint: envelope.author.fingerprint(),
            sent_at: envelope.id.timestamp(),
            nonce: envelope.nonce,
            body: envelope.body.clone(),
        }
    }
}
