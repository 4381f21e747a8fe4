//! The peer-to-peer frame catalogue: what members (and virtual clients) say to each other about
//! history, over a WebRTC data channel or, as a fallback, through the relay. Frames are JSON
//! text like relay frames; docs/protocol.md describes each.

use crate::channel::ChannelName;
use crate::encoding::{from_base64url, to_base64url};
use crate::ids::MessageId;
use crate::message::Envelope;
use serde::{Deserialize, Serialize};

/// Largest peer frame, in bytes of JSON text. One envelope with the longest text fits.
pub const MAX_PEER_FRAME_BYTES: usize = 64 * 1024;
/// Envelopes frames are filled up to about this many bytes (at least one envelope each), the
/// size data channels carry well everywhere.
pub const TARGET_ENVELOPES_FRAME_BYTES: usize = 16 * 1024;
/// Most ids in one `want` frame.
pub const MAX_WANT_IDS: usize = 256;
/// Most ids in one `have` frame.
pub const MAX_HAVE_IDS: usize = 1024;
/// Reconciliation messages are at most this long (negentropy's frame size limit); in base64
/// the frame stays under [`MAX_PEER_FRAME_BYTES`]. A newcomer learns about 1,000 ids per round
/// trip.
pub const MAX_RECONCILE_BYTES: usize = 32 * 1024;

/// One negentropy (protocol version 1, `0x61`) message, base64url on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegentropyMessage(pub Vec<u8>);

impl Serialize for NegentropyMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_base64url(&self.0))
    }
}

impl<'de> Deserialize<'de> for NegentropyMessage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = from_base64url(&text).map_err(serde::de::Error::custom)?;
        if bytes.len() > MAX_RECONCILE_BYTES {
            return Err(serde::de::Error::custom("reconcile message too long"));
        }
        Ok(Self(bytes))
    }
}

/// Frames between peers. The channel in each frame scopes it: a peer answers only for channels
/// both sides are in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerToPeer {
    /// A reconciliation step from the side that started it.
    ReconcileQuery {
        channel: ChannelName,
        message: NegentropyMessage,
    },
    /// The other side's answer to a query.
    ReconcileReply {
        channel: ChannelName,
        message: NegentropyMessage,
    },
    /// "Send me these" (at most [`MAX_WANT_IDS`]); answered with `envelopes`.
    Want {
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    /// "I have these" (at most [`MAX_HAVE_IDS`]): new messages offered onward, or what
    /// reconciliation found the other side lacks.
    Have {
        channel: ChannelName,
        ids: Vec<MessageId>,
    },
    Envelopes {
        channel: ChannelName,
        envelopes: Vec<Envelope>,
    },
}

impl PeerToPeer {
    /// Every `type` this catalogue knows.
    pub const TYPES: &'static [&'static str] = &[
        "reconcile_query",
        "reconcile_reply",
        "want",
        "have",
        "envelopes",
    ];

    pub fn channel(&self) -> &ChannelName {
        match self {
            PeerToPeer::ReconcileQuery { channel, .. }
            | PeerToPeer::ReconcileReply { channel, .. }
            | PeerToPeer::Want { channel, .. }
            | PeerToPeer::Have { channel, .. }
            | PeerToPeer::Envelopes { channel, .. } => channel,
        }
    }
}

/// An upper bound on an envelope's JSON size, without encoding it: fixed fields plus the body,
/// whose characters may each need up to six bytes escaped.
pub fn envelope_size_bound(envelope: &Envelope) -> usize {
    const FIXED_FIELDS: usize = 512;
    /// An attachment's hashes, size and field names, and an image's shape.
    const ATTACHMENT_FIXED_FIELDS: usize = 256;
    let attachments = envelope.body.attachments();
    let strings: usize = attachments
        .iter()
        .map(|attachment| {
            let preview = attachment
                .image
                .as_ref()
                .map_or(0, |image| image.preview.len());
            attachment.name.len() + attachment.media_type.len() + preview
        })
        .sum();
    FIXED_FIELDS
        + attachments.len() * ATTACHMENT_FIXED_FIELDS
        + envelope.channel.as_str().len()
        + 6 * (envelope.body.text_str().len() + strings)
}
