//! Named sizes and counts of the wire format. docs/protocol.md lists each; relay-side rates and
//! quotas that an operator may tune live in the relay's configuration instead.

/// Largest WebSocket text frame a client may send to the relay, in bytes.
pub const MAX_CLIENT_FRAME_BYTES: usize = 64 * 1024;
/// Largest message text, in UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// Channel names: 1 to 32 characters from `a-z 0-9 - _`, starting with a letter or digit.
pub const MAX_CHANNEL_NAME_CHARS: usize = 32;
/// Display names: 1 to 48 characters, no control characters, no surrounding white space.
pub const MAX_DISPLAY_NAME_CHARS: usize = 48;
/// Attachment file names, in UTF-8 bytes.
pub const MAX_ATTACHMENT_NAME_BYTES: usize = 255;
/// Attachment media types (`type/subtype`), in bytes.
pub const MAX_MEDIA_TYPE_BYTES: usize = 127;
/// Largest attachment that may be announced, in bytes.
pub const MAX_ATTACHMENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;
/// An image attachment's width and height, in pixels (JPEG's limit; larger images are sent as
/// plain files).
pub const MAX_IMAGE_SIDE: u32 = 65_535;
/// An image attachment's BlurHash preview, in bytes (9 × 9 components, BlurHash's largest).
pub const MAX_PREVIEW_BYTES: usize = 4 + 2 * 81;
/// Largest opaque WebRTC signalling payload (an SDP offer is typically 2 to 6 KiB).
pub const MAX_SIGNAL_BYTES: usize = 16 * 1024;
/// Peer frames forwarded by the relay (`peer`): bytes per second per member, sustained, and the
/// burst above it. Relays may be configured otherwise; clients pace themselves to these.
pub const RELAYED_PEER_BYTES_PER_SECOND: usize = 256 * 1024;
pub const RELAYED_PEER_BURST_BYTES: usize = 2 * 1024 * 1024;
/// Channels one session may have joined at once.
pub const MAX_CHANNELS_PER_SESSION: usize = 64;
/// Most ICE servers a relay hands to clients.
pub const MAX_ICE_SERVERS: usize = 8;
/// Sessions per `joined` or `members` frame: member lists go out in small frames, so no frame
/// (and no connection's write buffer, which keeps the size of its largest frame) grows with the
/// size of a channel.
pub const MEMBERS_PER_FRAME: usize = 8;
/// Most sessions listed when joining a channel (the channel summary's `online` count is exact).
pub const MAX_LISTED_MEMBERS: usize = 1024;
/// Most channels in a channel list: configured default channels first, then the busiest.
pub const MAX_LISTED_CHANNELS: usize = 64;
