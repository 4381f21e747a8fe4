//! The member's side of the relay protocol as a sans-IO state machine: login, the relay-key pin,
//! channels and presence, the outbox, verification of everything delivered, and reconnecting.
//!
//! The node ([`crate::node::Node`]) feeds it [`ClientInput`]s with the current time and moves
//! the [`ClientOutput`]s it polls, in order, before the next input. [`ClientSession::poll_timeout`]
//! says when to feed it [`ClientInput::Timeout`]. Logging in is in `login.rs`, what needs a login
//! in `channels.rs`, the outbox in `outbox.rs`, and what the page is told in `views.rs`.

use crate::channel::ChannelName;
use crate::codec::{decode_relay_frame, encode};
use crate::frames::{
    ChannelSummary, ClientToRelay, IceServer, MemberPresence, PeerAddress, SessionId,
};
use crate::identity::{PublicKey, SecretKey, Verifier};
use crate::membership::{DisplayName, InviteToken, MembershipCertificate, Profile, Role};
use crate::message::{ClientNonce, MessageBody, VerifiedEnvelope};
use crate::random::SeededRandom;
use crate::time::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

mod channels;
mod login;
mod outbox;
mod views;

pub use views::{ClientEvent, ConnectionState, MemberView, MessageView};

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

/// Where the relay connection stands ("link" is kept for peer links).
#[derive(Debug)]
enum Connection {
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
    connection: Connection,
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
            connection: Connection::Connecting {
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
        self.connection = Connection::Connecting {
            deadline: now.saturating_add_millis(LOGIN_TIMEOUT_MILLIS),
        };
        self.push(ClientOutput::Connect);
        self.announce_connection(now);
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    pub fn is_online(&self) -> bool {
        matches!(self.connection, Connection::Online { .. })
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    /// When to feed [`ClientInput::Timeout`] next, if ever.
    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        let connection_deadline = match &self.connection {
            Connection::Connecting { deadline } | Connection::AwaitingWelcome { deadline, .. } => {
                Some(*deadline)
            }
            Connection::Offline { retry_at } => Some(*retry_at),
            Connection::Online { .. } | Connection::Stopped => None,
        };
        let resend = self.resend_at.filter(|_| self.is_online());
        connection_deadline.into_iter().chain(resend).min()
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
        if matches!(self.connection, Connection::Online { .. }) {
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

    fn announce_connection(&mut self, now: UnixMillis) {
        let (state, retry_in_millis) = match &self.connection {
            Connection::Connecting { .. } | Connection::AwaitingWelcome { .. } => {
                (ConnectionState::Connecting, None)
            }
            Connection::Online { .. } => (ConnectionState::Online, None),
            Connection::Offline { retry_at } => (
                ConnectionState::Offline,
                Some(retry_at.0.saturating_sub(now.0)),
            ),
            Connection::Stopped => (ConnectionState::Stopped, None),
        };
        self.event(ClientEvent::Connection {
            state,
            retry_in_millis,
        });
    }

    fn on_timeout(&mut self, now: UnixMillis) {
        match &self.connection {
            Connection::Offline { retry_at } if *retry_at <= now => self.connect(now),
            Connection::Connecting { deadline } | Connection::AwaitingWelcome { deadline, .. }
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
        if !matches!(
            self.connection,
            Connection::Stopped | Connection::Offline { .. }
        ) {
            self.go_offline(now);
        }
    }

    /// Waits before the next attempt: about [`FIRST_BACKOFF_MILLIS`], doubling per failure.
    fn go_offline(&mut self, now: UnixMillis) {
        if matches!(self.connection, Connection::Online { .. }) {
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
        self.connection = Connection::Offline {
            retry_at: now.saturating_add_millis(delay),
        };
        self.announce_connection(now);
    }

    fn stop(&mut self, now: UnixMillis, message: String) {
        if matches!(self.connection, Connection::Online { .. }) {
            self.news(PeerNews::Offline);
        }
        self.connection = Connection::Stopped;
        self.push(ClientOutput::Close);
        self.event(ClientEvent::Stopped { message });
        self.announce_connection(now);
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
        match std::mem::replace(&mut self.connection, Connection::Stopped) {
            Connection::Connecting { deadline } => {
                self.connection = Connection::Connecting { deadline };
                self.on_frame_before_login(now, frame, deadline);
            }
            Connection::AwaitingWelcome { relay, deadline } => {
                self.on_frame_awaiting_welcome(now, frame, relay, deadline)
            }
            Connection::Online { relay } => {
                self.connection = Connection::Online { relay };
                self.on_frame_online(now, frame);
            }
            other @ (Connection::Offline { .. } | Connection::Stopped) => self.connection = other,
        }
    }
}
