//! What the session tells the page (or a virtual client's log): events and the views of
//! members and messages they carry.

use super::OutboxEntry;
use crate::channel::ChannelName;
use crate::frames::{ChannelSummary, ErrorCode, SessionId};
use crate::identity::PublicKey;
use crate::ids::MessageId;
use crate::membership::{DisplayName, InviteToken, Role};
use crate::message::{ClientNonce, Envelope, MessageBody};
use crate::time::UnixMillis;
use serde::{Deserialize, Serialize};

/// Where the relay connection stands, for the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
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
        state: ConnectionState,
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
    /// The session stopped for good ([`ConnectionState::Stopped`]); the message says why.
    Stopped {
        message: String,
    },
    InviteMinted {
        token: InviteToken,
    },
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
