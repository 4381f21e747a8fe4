//! proptest strategies for every protocol type, shared by the property tests.
// Each test binary that includes this module uses a different subset of it.
#![allow(dead_code)]

use peerchat_shared::channel::ChannelName;
use peerchat_shared::frames::{
    ChannelSummary, ClientToRelay, ErrorCode, IceServer, Login, MemberPresence, PeerAddress,
    PresenceChange, RelayToClient, SessionId,
};
use peerchat_shared::identity::{PublicKey, Signature};
use peerchat_shared::ids::MessageId;
use peerchat_shared::limits::{MAX_ATTACHMENTS, MAX_ATTACHMENT_BYTES, MAX_IMAGE_SIDE};
use peerchat_shared::login::LoginNonce;
use peerchat_shared::membership::{DisplayName, InviteToken, MembershipCertificate, Profile, Role};
use peerchat_shared::message::{
    Attachment, ClientNonce, Draft, Envelope, ImageInfo, MessageBody, Sha256Digest,
};
use peerchat_shared::time::UnixMillis;
use proptest::prelude::*;

const JS_SAFE_MAX: u64 = (1 << 53) - 1;

pub fn bytes<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    prop::collection::vec(any::<u8>(), N).prop_map(|bytes| bytes.try_into().unwrap())
}

pub fn public_key() -> impl Strategy<Value = PublicKey> {
    bytes::<32>().prop_map(PublicKey)
}

pub fn signature() -> impl Strategy<Value = Signature> {
    bytes::<64>().prop_map(Signature)
}

pub fn time() -> impl Strategy<Value = UnixMillis> {
    (0..=JS_SAFE_MAX).prop_map(UnixMillis)
}

pub fn session() -> impl Strategy<Value = SessionId> {
    (0..=JS_SAFE_MAX).prop_map(SessionId)
}

pub fn channel() -> impl Strategy<Value = ChannelName> {
    "[a-z0-9][a-z0-9_-]{0,31}".prop_map(|name| ChannelName::new(name).unwrap())
}

pub fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Member), Just(Role::Owner), Just(Role::Virtual)]
}

pub fn attachment() -> impl Strategy<Value = Attachment> {
    let image = (1..=MAX_IMAGE_SIDE, 1..=MAX_IMAGE_SIDE).prop_map(|(width, height)| ImageInfo {
        width,
        height,
        preview: "LEHV6nWB2yk8pyo0adR*.7kCMdnj".into(),
    });
    (
        "[^\\p{Cc}\\p{Cf}/\\\\]{1,40}"
            .prop_filter("not . or ..", |name| name != "." && name != ".."),
        "[a-z]{1,12}/[a-z0-9][a-z0-9.+-]{0,20}",
        0..=MAX_ATTACHMENT_BYTES,
        bytes::<32>(),
        bytes::<32>(),
        proptest::option::of(image),
    )
        .prop_map(|(name, media_type, size, sha256, root, image)| Attachment {
            name,
            media_type,
            size,
            sha256: Sha256Digest(sha256),
            root: Sha256Digest(root),
            image,
        })
        // The protocol's own rules decide (its list of format characters, say).
        .prop_filter("a valid attachment", |attachment| {
            MessageBody::with_attachments("", vec![attachment.clone()])
                .validate()
                .is_ok()
        })
}

pub fn body() -> impl Strategy<Value = MessageBody> {
    let with_attachments = (
        "\\PC{0,200}",
        proptest::collection::vec(attachment(), 1..=MAX_ATTACHMENTS),
    )
        .prop_map(|(caption, attachments)| MessageBody::with_attachments(caption, attachments));
    prop_oneof!["\\PC{1,200}".prop_map(MessageBody::text), with_attachments]
}

pub fn draft() -> impl Strategy<Value = Draft> {
    (channel(), bytes::<16>(), body(), signature()).prop_map(|(channel, nonce, body, signature)| {
        Draft {
            channel,
            nonce: ClientNonce(nonce),
            body,
            signature,
        }
    })
}

pub fn envelope() -> impl Strategy<Value = Envelope> {
    (bytes::<16>(), draft(), public_key(), signature()).prop_map(
        |(id, draft, author, relay_signature)| Envelope {
            id: MessageId::from_bytes(id),
            channel: draft.channel,
            author,
            nonce: draft.nonce,
            body: draft.body,
            author_signature: draft.signature,
            relay_signature,
        },
    )
}

pub fn certificate() -> impl Strategy<Value = MembershipCertificate> {
    (public_key(), role(), time(), time(), signature()).prop_map(
        |(member, role, issued_at, expires_at, signature)| MembershipCertificate {
            member,
            role,
            issued_at,
            expires_at,
            signature,
        },
    )
}

pub fn invite() -> impl Strategy<Value = InviteToken> {
    (bytes::<16>(), role(), any::<u32>(), time(), signature()).prop_map(
        |(invite_id, role, max_uses, expires_at, signature)| InviteToken {
            invite_id,
            role,
            max_uses,
            expires_at,
            signature,
        },
    )
}

pub fn profile() -> impl Strategy<Value = Profile> {
    (
        "[^\\s\\p{C}]([^\\p{C}]{0,46}[^\\s\\p{C}])?",
        public_key(),
        time(),
        signature(),
    )
        .prop_map(|(name, member, updated_at, signature)| Profile {
            member,
            display_name: DisplayName::new(name).unwrap(),
            updated_at,
            signature,
        })
}

fn login() -> impl Strategy<Value = Login> {
    (
        any::<u32>(),
        public_key(),
        signature(),
        prop::option::of(certificate()),
        prop::option::of(invite()),
        prop::option::of(profile()),
    )
        .prop_map(
            |(protocol, key, signature, certificate, invite, profile)| Login {
                protocol,
                key,
                signature,
                certificate,
                invite,
                profile,
            },
        )
}

pub fn client_frame() -> impl Strategy<Value = ClientToRelay> {
    prop_oneof![
        login().prop_map(|login| ClientToRelay::Login(Box::new(login))),
        channel().prop_map(|channel| ClientToRelay::Join { channel }),
        channel().prop_map(|channel| ClientToRelay::Leave { channel }),
        Just(ClientToRelay::ListChannels),
        draft().prop_map(|draft| ClientToRelay::Send { draft }),
        profile().prop_map(|profile| ClientToRelay::SetProfile { profile }),
        (session(), "\\PC{0,100}").prop_map(|(to, data)| ClientToRelay::Signal { to, data }),
        (role(), any::<u32>(), any::<u64>()).prop_map(|(role, max_uses, ttl_seconds)| {
            ClientToRelay::MintInvite {
                role,
                max_uses,
                ttl_seconds,
            }
        }),
        Just(ClientToRelay::Ping),
    ]
}

fn channel_summaries() -> impl Strategy<Value = Vec<ChannelSummary>> {
    prop::collection::vec(
        (channel(), any::<u32>(), any::<bool>()).prop_map(|(name, online, default)| {
            ChannelSummary {
                name,
                online,
                default,
            }
        }),
        0..4,
    )
}

fn presence() -> impl Strategy<Value = MemberPresence> {
    (public_key(), session(), role(), prop::option::of(profile())).prop_map(
        |(key, session, role, profile)| MemberPresence {
            key,
            session,
            role,
            profile,
        },
    )
}

fn ice_server() -> impl Strategy<Value = IceServer> {
    (
        prop::collection::vec("stun:[a-z.]{1,20}:[0-9]{1,5}", 1..3),
        prop::option::of("[a-z]{1,10}"),
        prop::option::of("[a-zA-Z0-9]{1,20}"),
    )
        .prop_map(|(urls, username, credential)| IceServer {
            urls,
            username,
            credential,
        })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::MalformedFrame),
        Just(ErrorCode::InvalidField),
        Just(ErrorCode::RateLimited),
        Just(ErrorCode::SlowConsumer),
        Just(ErrorCode::BadSignature),
    ]
}

fn presence_change() -> impl Strategy<Value = PresenceChange> {
    prop_oneof![
        Just(PresenceChange::Joined),
        Just(PresenceChange::Left),
        Just(PresenceChange::Updated)
    ]
}

pub fn relay_frame() -> impl Strategy<Value = RelayToClient> {
    prop_oneof![
        (any::<u32>(), public_key(), bytes::<32>()).prop_map(|(protocol, relay, nonce)| {
            RelayToClient::Challenge {
                protocol,
                relay,
                nonce: LoginNonce(nonce),
            }
        }),
        (
            session(),
            role(),
            certificate(),
            channel_summaries(),
            prop::collection::vec(ice_server(), 0..3)
        )
            .prop_map(|(session, role, certificate, channels, ice_servers)| {
                RelayToClient::Welcome {
                    session,
                    role,
                    certificate,
                    channels,
                    ice_servers,
                }
            }),
        channel_summaries().prop_map(|channels| RelayToClient::Channels { channels }),
        (channel(), prop::collection::vec(presence(), 0..3))
            .prop_map(|(channel, members)| RelayToClient::Joined { channel, members }),
        (channel(), prop::collection::vec(presence(), 0..3))
            .prop_map(|(channel, members)| RelayToClient::Members { channel, members }),
        channel().prop_map(|channel| RelayToClient::Left { channel }),
        (channel(), presence_change(), presence()).prop_map(|(channel, change, member)| {
            RelayToClient::Presence {
                channel,
                change,
                member,
            }
        }),
        envelope().prop_map(|envelope| RelayToClient::Message { envelope }),
        envelope().prop_map(|envelope| RelayToClient::Ack { envelope }),
        (public_key(), session(), "\\PC{0,100}").prop_map(|(key, session, data)| {
            RelayToClient::Signal {
                from: PeerAddress { key, session },
                data,
            }
        }),
        invite().prop_map(|token| RelayToClient::Invite { token }),
        (error_code(), "\\PC{0,80}", prop::option::of(bytes::<16>())).prop_map(
            |(code, message, nonce)| RelayToClient::Error {
                code,
                message,
                nonce: nonce.map(ClientNonce)
            }
        ),
        Just(RelayToClient::Pong),
    ]
}

fn message_ids(max: usize) -> impl Strategy<Value = Vec<MessageId>> {
    prop::collection::vec(bytes::<16>().prop_map(MessageId::from_bytes), 0..max)
}

pub fn peer_frame() -> impl Strategy<Value = peerchat_shared::peer::PeerToPeer> {
    use peerchat_shared::peer::{NegentropyMessage, PeerToPeer};
    let negentropy = || prop::collection::vec(any::<u8>(), 0..64).prop_map(NegentropyMessage);
    prop_oneof![
        (channel(), negentropy())
            .prop_map(|(channel, message)| PeerToPeer::ReconcileQuery { channel, message }),
        (channel(), negentropy())
            .prop_map(|(channel, message)| PeerToPeer::ReconcileReply { channel, message }),
        (channel(), message_ids(8)).prop_map(|(channel, ids)| PeerToPeer::Want { channel, ids }),
        (channel(), message_ids(8)).prop_map(|(channel, ids)| PeerToPeer::Have { channel, ids }),
        (channel(), prop::collection::vec(envelope(), 0..3))
            .prop_map(|(channel, envelopes)| PeerToPeer::Envelopes { channel, envelopes }),
    ]
}
