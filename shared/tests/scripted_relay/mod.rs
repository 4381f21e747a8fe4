//! The relay side of a member's conversation, scripted with the real signing code: for tests of
//! the session and of the node.
#![allow(dead_code)]

use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::ClientConfig;
use peerchat_shared::frames::{ChannelSummary, RelayToClient, SessionId};
use peerchat_shared::identity::SecretKey;
use peerchat_shared::ids::MessageId;
use peerchat_shared::login::LoginNonce;
use peerchat_shared::membership::{MembershipCertificate, Role};
use peerchat_shared::message::{ClientNonce, Draft, Envelope, MessageBody};
use peerchat_shared::time::UnixMillis;

pub const NOW: UnixMillis = UnixMillis(1_800_000_000_000);

pub fn general() -> ChannelName {
    ChannelName::new("general").unwrap()
}

pub fn member_key() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

/// A first visit's session settings for [`member_key`].
pub fn member_config() -> ClientConfig {
    ClientConfig {
        key: member_key(),
        display_name: None,
        pinned_relay: None,
        certificate: None,
        invite: None,
        outbox: vec![],
        known_channels: vec![],
        random_seed: 42,
    }
}

/// The relay side of the conversation, signing with a real key.
pub struct ScriptedRelay {
    pub key: SecretKey,
    pub nonce: LoginNonce,
    pub next_id: u128,
}

impl ScriptedRelay {
    pub fn new(seed: u8) -> Self {
        Self {
            key: SecretKey::from_seed([seed; 32]),
            nonce: LoginNonce([seed.wrapping_add(100); 32]),
            next_id: 1,
        }
    }

    pub fn challenge(&self) -> RelayToClient {
        RelayToClient::Challenge {
            protocol: 1,
            relay: self.key.public_key(),
            nonce: self.nonce,
        }
    }

    /// Welcomes `member` as session 1, listing `general` as a default channel.
    pub fn welcome(&self, member: &SecretKey) -> RelayToClient {
        RelayToClient::Welcome {
            session: SessionId(1),
            role: Role::Member,
            certificate: self.certificate(member, NOW),
            channels: vec![ChannelSummary {
                name: general(),
                online: 1,
                default: true,
            }],
            ice_servers: vec![],
        }
    }

    pub fn certificate(&self, member: &SecretKey, issued_at: UnixMillis) -> MembershipCertificate {
        MembershipCertificate::issue(
            &self.key,
            member.public_key(),
            Role::Member,
            issued_at,
            issued_at.saturating_add_millis(86_400_000),
        )
    }

    /// Checks a draft the way the relay does and stamps it.
    pub fn stamp(&mut self, author: &SecretKey, draft: Draft) -> Envelope {
        let verified = draft
            .verify(
                &self.key.public_key(),
                &author.public_key().verifier().unwrap(),
            )
            .expect("the client signs drafts the relay accepts");
        self.next_id += 1;
        let id = MessageId::from_bytes(((u128::from(NOW.0) << 80) | self.next_id).to_be_bytes());
        verified.seal(id, &self.key)
    }

    /// A message from `author` in `general`, stamped.
    pub fn message_from(&mut self, author: &SecretKey, text: &str) -> Envelope {
        let draft = Draft::sign(
            author,
            &self.key.public_key(),
            general(),
            ClientNonce([self.next_id as u8; 16]),
            MessageBody::text(text),
        );
        self.stamp(author, draft)
    }
}
