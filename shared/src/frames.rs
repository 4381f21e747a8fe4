//! The relay <-> client frame catalogue. Each frame is one WebSocket text message holding a JSON
//! object whose `type` field names the frame; docs/protocol.md describes every field.

use crate::channel::ChannelName;
use crate::identity::{PublicKey, Signature};
use crate::login::LoginNonce;
use crate::membership::{InviteToken, MembershipCertificate, Profile, Role};
use crate::message::{ClientNonce, Draft, Envelope};
use serde::{Deserialize, Serialize};

/// The relay's number for one WebSocket connection (one browser tab or device). A member with
/// several tabs has several sessions; signalling addresses sessions. Always below 2^53 so that
/// JavaScript numbers hold it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

/// Frames a client sends to the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientToRelay {
    /// The answer to the relay's `challenge`; must be the first frame.
    Login(Box<Login>),
    Join {
        channel: ChannelName,
    },
    Leave {
        channel: ChannelName,
    },
    ListChannels,
    Send {
        draft: Draft,
    },
    SetProfile {
        profile: Profile,
    },
    /// An opaque WebRTC signalling payload for another session; the relay adds `from`.
    Signal {
        to: SessionId,
        data: String,
    },
    /// A peer-to-peer frame ([`crate::peer::PeerToPeer`], as JSON text) for another session,
    /// when no data channel to it could be opened. The relay forwards it with `from` set, within
    /// a per-member byte quota, and keeps nothing.
    Peer {
        to: SessionId,
        frame: String,
    },
    /// Owners only: mint an invite token.
    MintInvite {
        role: Role,
        max_uses: u32,
        ttl_seconds: u64,
    },
    Ping,
}

impl ClientToRelay {
    /// The frame's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientToRelay::Login(_) => "login",
            ClientToRelay::Join { .. } => "join",
            ClientToRelay::Leave { .. } => "leave",
            ClientToRelay::ListChannels => "list_channels",
            ClientToRelay::Send { .. } => "send",
            ClientToRelay::SetProfile { .. } => "set_profile",
            ClientToRelay::Signal { .. } => "signal",
            ClientToRelay::Peer { .. } => "peer",
            ClientToRelay::MintInvite { .. } => "mint_invite",
            ClientToRelay::Ping => "ping",
        }
    }

    /// Every `type` this catalogue knows, for telling an unknown frame from an invalid one.
    pub const TYPES: &'static [&'static str] = &[
        "login",
        "join",
        "leave",
        "list_channels",
        "send",
        "set_profile",
        "signal",
        "peer",
        "mint_invite",
        "ping",
    ];
}

/// The fields of the `login` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub protocol: u32,
    pub key: PublicKey,
    /// Signature over the login byte string (see [`crate::login::login_signed_bytes`]).
    pub signature: Signature,
    /// The certificate from an earlier `welcome`, if the member has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<MembershipCertificate>,
    /// An invite token, when joining an invite-only relay for the first time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<InviteToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

/// A channel as listed to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub name: ChannelName,
    /// Sessions currently joined.
    pub online: u32,
    /// One of the relay's default channels, which every member is in unless it leaves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
}

/// A session that is online in a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPresence {
    pub key: PublicKey,
    pub session: SessionId,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceChange {
    Joined,
    Left,
    Updated,
}

/// Where a signalling payload came from, as the relay knows it from the authenticated session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddress {
    pub key: PublicKey,
    pub session: SessionId,
}

/// A STUN or TURN server for `RTCPeerConnection`'s `iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Frames the relay sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelayToClient {
    /// The first frame on every connection.
    Challenge {
        protocol: u32,
        relay: PublicKey,
        nonce: LoginNonce,
    },
    /// Login succeeded. `certificate` is the one to present next time (new or renewed).
    Welcome {
        session: SessionId,
        role: Role,
        certificate: MembershipCertificate,
        channels: Vec<ChannelSummary>,
        ice_servers: Vec<IceServer>,
    },
    Channels {
        channels: Vec<ChannelSummary>,
    },
    /// Answer to `join`, with the first sessions online there ([`MEMBERS_PER_FRAME`] at most);
    /// `members` frames with the rest follow at once.
    ///
    /// [`MEMBERS_PER_FRAME`]: crate::limits::MEMBERS_PER_FRAME
    Joined {
        channel: ChannelName,
        members: Vec<MemberPresence>,
    },
    /// More sessions online in a channel just joined, after `joined`.
    Members {
        channel: ChannelName,
        members: Vec<MemberPresence>,
    },
    Left {
        channel: ChannelName,
    },
    Presence {
        channel: ChannelName,
        change: PresenceChange,
        member: MemberPresence,
    },
    /// A new message in a joined channel.
    Message {
        envelope: Envelope,
    },
    /// The sender's own message, stamped: store it and clear it from the outbox.
    Ack {
        envelope: Envelope,
    },
    Signal {
        from: PeerAddress,
        data: String,
    },
    /// A peer-to-peer frame forwarded from another session (see [`ClientToRelay::Peer`]).
    Peer {
        from: PeerAddress,
        frame: String,
    },
    Invite {
        token: InviteToken,
    },
    Error {
        code: ErrorCode,
        message: String,
        /// Set when the error concerns a `send`, so the client knows which draft failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<ClientNonce>,
    },
    Pong,
}

impl RelayToClient {
    /// The frame's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            RelayToClient::Challenge { .. } => "challenge",
            RelayToClient::Welcome { .. } => "welcome",
            RelayToClient::Channels { .. } => "channels",
            RelayToClient::Joined { .. } => "joined",
            RelayToClient::Members { .. } => "members",
            RelayToClient::Left { .. } => "left",
            RelayToClient::Presence { .. } => "presence",
            RelayToClient::Message { .. } => "message",
            RelayToClient::Ack { .. } => "ack",
            RelayToClient::Signal { .. } => "signal",
            RelayToClient::Peer { .. } => "peer",
            RelayToClient::Invite { .. } => "invite",
            RelayToClient::Error { .. } => "error",
            RelayToClient::Pong => "pong",
        }
    }

    /// Every `type` this catalogue knows.
    pub const TYPES: &'static [&'static str] = &[
        "challenge",
        "welcome",
        "channels",
        "joined",
        "members",
        "left",
        "presence",
        "message",
        "ack",
        "signal",
        "peer",
        "invite",
        "error",
        "pong",
    ];
}

/// Stable, machine-readable error codes. Clients branch on these; `message` is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a JSON object with a string `type`, or a binary WebSocket frame.
    MalformedFrame,
    UnknownType,
    /// A known frame with a missing, mistyped or rule-breaking field.
    InvalidField,
    FrameTooLarge,
    UnsupportedVersion,
    NotLoggedIn,
    AlreadyLoggedIn,
    /// The login signature did not verify, or the challenge was already used.
    LoginFailed,
    ChallengeExpired,
    /// This relay is invite-only and no certificate or invite was presented.
    NotAdmitted,
    /// A certificate or invite was forged, altered, expired or issued to another key.
    InvalidCredential,
    InviteUsedUp,
    Banned,
    BadSignature,
    /// A `send` reusing a recent nonce of the same key for a different draft.
    NonceReused,
    RateLimited,
    NotInChannel,
    TooManyChannels,
    UnknownPeer,
    Forbidden,
    TooManyConnections,
    SlowConsumer,
    ShuttingDown,
    Internal,
    /// A code this client version does not know yet.
    #[serde(other)]
    Other,
}
