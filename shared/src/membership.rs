//! Admission without a member database: relay-signed membership certificates and invite tokens,
//! and member-signed profiles.

use crate::encoding::{from_base64url, to_base64url};
use crate::identity::{BadSignature, PublicKey, SecretKey, Signature, Verifier};
use crate::limits::MAX_DISPLAY_NAME_CHARS;
use crate::signing::{Domain, SignedBytes};
use crate::time::UnixMillis;
use serde::{Deserialize, Serialize};

/// What a member may do. `Virtual` marks the operator's headless archive peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Owner,
    Virtual,
}

impl Role {
    /// The byte that stands for the role in signed byte strings.
    pub const fn code(self) -> u8 {
        match self {
            Role::Member => 1,
            Role::Owner => 2,
            Role::Virtual => 3,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Role::Member),
            2 => Some(Role::Owner),
            3 => Some(Role::Virtual),
            _ => None,
        }
    }
}

/// The relay's statement that `member` belongs to the community with `role` until `expires_at`.
/// The member keeps it and presents it at each login; the relay keeps no list of members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipCertificate {
    pub member: PublicKey,
    pub role: Role,
    pub issued_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub signature: Signature,
}

/// Why a certificate or invite is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialRejected {
    #[error("the relay's signature does not verify")]
    BadSignature,
    #[error("it has expired")]
    Expired,
    #[error("it was issued to another key")]
    WrongMember,
    #[error("it is not well-formed")]
    Malformed,
}

impl From<BadSignature> for CredentialRejected {
    fn from(_: BadSignature) -> Self {
        CredentialRejected::BadSignature
    }
}

/// `peerchat/v1/membership\0 ‖ relay key ‖ member key ‖ role (u8) ‖ issued_at (u64) ‖ expires_at (u64)`.
pub fn membership_signed_bytes(
    relay: &PublicKey,
    member: &PublicKey,
    role: Role,
    issued_at: UnixMillis,
    expires_at: UnixMillis,
) -> SignedBytes {
    SignedBytes::new(Domain::Membership)
        .fixed(&relay.0)
        .fixed(&member.0)
        .u8(role.code())
        .u64(issued_at.0)
        .u64(expires_at.0)
}

impl MembershipCertificate {
    pub fn issue(
        relay: &SecretKey,
        member: PublicKey,
        role: Role,
        issued_at: UnixMillis,
        expires_at: UnixMillis,
    ) -> Self {
        let bytes =
            membership_signed_bytes(&relay.public_key(), &member, role, issued_at, expires_at);
        Self {
            member,
            role,
            issued_at,
            expires_at,
            signature: relay.sign(&bytes),
        }
    }

    /// Checks the relay's signature, that it names `member`, and that it has not expired at `now`.
    pub fn verify(
        &self,
        relay: &Verifier,
        member: &PublicKey,
        now: UnixMillis,
    ) -> Result<(), CredentialRejected> {
        let bytes = membership_signed_bytes(
            &relay.public_key(),
            &self.member,
            self.role,
            self.issued_at,
            self.expires_at,
        );
        relay.verify(&bytes, &self.signature)?;
        if self.member != *member {
            return Err(CredentialRejected::WrongMember);
        }
        if now >= self.expires_at {
            return Err(CredentialRejected::Expired);
        }
        Ok(())
    }
}

/// A relay-signed invitation: whoever holds it may join with `role` until `expires_at`, at most
/// `max_uses` times (the relay counts uses). Text form: base64url of
/// `invite id (16) ‖ role (u8) ‖ max_uses (u32) ‖ expires_at (u64) ‖ signature (64)`, 93 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteToken {
    pub invite_id: [u8; 16],
    pub role: Role,
    pub max_uses: u32,
    pub expires_at: UnixMillis,
    pub signature: Signature,
}

const INVITE_TOKEN_BYTES: usize = 16 + 1 + 4 + 8 + 64;

/// `peerchat/v1/invite\0 ‖ relay key ‖ invite id (16) ‖ role (u8) ‖ max_uses (u32) ‖ expires_at (u64)`.
pub fn invite_signed_bytes(
    relay: &PublicKey,
    invite_id: &[u8; 16],
    role: Role,
    max_uses: u32,
    expires_at: UnixMillis,
) -> SignedBytes {
    SignedBytes::new(Domain::Invite)
        .fixed(&relay.0)
        .fixed(invite_id)
        .u8(role.code())
        .u32(max_uses)
        .u64(expires_at.0)
}

impl InviteToken {
    /// `invite_id` is 16 random bytes from the caller's CSPRNG.
    pub fn mint(
        relay: &SecretKey,
        invite_id: [u8; 16],
        role: Role,
        max_uses: u32,
        expires_at: UnixMillis,
    ) -> Self {
        let bytes =
            invite_signed_bytes(&relay.public_key(), &invite_id, role, max_uses, expires_at);
        Self {
            invite_id,
            role,
            max_uses,
            expires_at,
            signature: relay.sign(&bytes),
        }
    }

    /// Checks the relay's signature and that the invite has not expired at `now`. Counting uses
    /// is the relay's job.
    pub fn verify(&self, relay: &Verifier, now: UnixMillis) -> Result<(), CredentialRejected> {
        let bytes = invite_signed_bytes(
            &relay.public_key(),
            &self.invite_id,
            self.role,
            self.max_uses,
            self.expires_at,
        );
        relay.verify(&bytes, &self.signature)?;
        if now >= self.expires_at {
            return Err(CredentialRejected::Expired);
        }
        Ok(())
    }

    fn to_token_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(INVITE_TOKEN_BYTES);
        bytes.extend_from_slice(&self.invite_id);
        bytes.push(self.role.code());
        bytes.extend_from_slice(&self.max_uses.to_be_bytes());
        bytes.extend_from_slice(&self.expires_at.0.to_be_bytes());
        bytes.extend_from_slice(&self.signature.0);
        bytes
    }

    fn from_token_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != INVITE_TOKEN_BYTES {
            return None;
        }
        let (invite_id, rest) = bytes.split_at(16);
        let (role, rest) = rest.split_at(1);
        let (max_uses, rest) = rest.split_at(4);
        let (expires_at, signature) = rest.split_at(8);
        Some(Self {
            invite_id: invite_id.try_into().ok()?,
            role: Role::from_code(role[0])?,
            max_uses: u32::from_be_bytes(max_uses.try_into().ok()?),
            expires_at: UnixMillis(u64::from_be_bytes(expires_at.try_into().ok()?)),
            signature: Signature(signature.try_into().ok()?),
        })
    }
}

impl std::fmt::Display for InviteToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&to_base64url(&self.to_token_bytes()))
    }
}

impl std::str::FromStr for InviteToken {
    type Err = CredentialRejected;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = from_base64url(text).map_err(|_| CredentialRejected::Malformed)?;
        Self::from_token_bytes(&bytes).ok_or(CredentialRejected::Malformed)
    }
}

impl Serialize for InviteToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InviteToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse()
            .map_err(|error| serde::de::Error::custom(format_args!("invite token: {error}")))
    }
}

/// A display name: 1 to [`MAX_DISPLAY_NAME_CHARS`] characters, no control characters, no
/// leading or trailing white space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

/// The text is not an acceptable display name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("display name must be 1 to {MAX_DISPLAY_NAME_CHARS} characters, without control characters or surrounding spaces")]
pub struct InvalidDisplayName;

/// Unicode's format characters (general category Cf, Unicode 16): invisible, and some reorder
/// the text around them (bidi controls), so a name holding one could pose as another.
const FORMAT_CHARACTERS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

pub(crate) fn is_format_character(character: char) -> bool {
    FORMAT_CHARACTERS
        .iter()
        .any(|(first, last)| (*first..=*last).contains(&character))
}

impl DisplayName {
    /// 1 to 48 characters, no control or format characters, no white space at either end.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidDisplayName> {
        let name = name.into();
        let length = name.chars().count();
        let ok = (1..=MAX_DISPLAY_NAME_CHARS).contains(&length)
            && name.trim() == name
            && !name
                .chars()
                .any(|character| character.is_control() || is_format_character(character));
        ok.then_some(Self(name)).ok_or(InvalidDisplayName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DisplayName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A member's self-description, signed by the member so peers can show it in history too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub member: PublicKey,
    pub display_name: DisplayName,
    pub updated_at: UnixMillis,
    pub signature: Signature,
}

/// `peerchat/v1/profile\0 ‖ relay key ‖ member key ‖ display name (var) ‖ updated_at (u64)`.
pub fn profile_signed_bytes(
    relay: &PublicKey,
    member: &PublicKey,
    display_name: &DisplayName,
    updated_at: UnixMillis,
) -> SignedBytes {
    SignedBytes::new(Domain::Profile)
        .fixed(&relay.0)
        .fixed(&member.0)
        .variable(display_name.as_str().as_bytes())
        .u64(updated_at.0)
}

impl Profile {
    pub fn sign(
        member: &SecretKey,
        relay: &PublicKey,
        display_name: DisplayName,
        updated_at: UnixMillis,
    ) -> Self {
        let key = member.public_key();
        let bytes = profile_signed_bytes(relay, &key, &display_name, updated_at);
        Self {
            member: key,
            display_name,
            updated_at,
            signature: member.sign(&bytes),
        }
    }

    /// Checks the member's signature over the profile, bound to `relay`.
    pub fn verify(&self, relay: &PublicKey, member: &Verifier) -> Result<(), CredentialRejected> {
        if member.public_key() != self.member {
            return Err(CredentialRejected::WrongMember);
        }
        let bytes = profile_signed_bytes(relay, &self.member, &self.display_name, self.updated_at);
        member.verify(&bytes, &self.signature)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn relay() -> SecretKey {
        SecretKey::from_seed([1; 32])
    }

    #[test]
    fn membership_certificate_is_checked_for_signature_member_and_expiry() {
        let relay = relay();
        let verifier = relay.public_key().verifier().unwrap();
        let member = SecretKey::from_seed([2; 32]).public_key();
        let cert = MembershipCertificate::issue(
            &relay,
            member,
            Role::Member,
            UnixMillis(10),
            UnixMillis(20),
        );
        assert_eq!(cert.verify(&verifier, &member, UnixMillis(15)), Ok(()));
        assert_eq!(
            cert.verify(&verifier, &member, UnixMillis(20)),
            Err(CredentialRejected::Expired)
        );
        let stranger = SecretKey::from_seed([3; 32]).public_key();
        assert_eq!(
            cert.verify(&verifier, &stranger, UnixMillis(15)),
            Err(CredentialRejected::WrongMember)
        );

        let promoted = MembershipCertificate {
            role: Role::Owner,
            ..cert
        };
        assert_eq!(
            promoted.verify(&verifier, &member, UnixMillis(15)),
            Err(CredentialRejected::BadSignature)
        );
        let forged = MembershipCertificate::issue(
            &SecretKey::from_seed([9; 32]),
            member,
            Role::Owner,
            UnixMillis(10),
            UnixMillis(20),
        );
        assert_eq!(
            forged.verify(&verifier, &member, UnixMillis(15)),
            Err(CredentialRejected::BadSignature)
        );
    }

    #[test]
    fn invite_token_text_round_trips_and_altered_tokens_fail() {
        let relay = relay();
        let verifier = relay.public_key().verifier().unwrap();
        let invite = InviteToken::mint(&relay, [7; 16], Role::Member, 5, UnixMillis(1_000));
        let text = invite.to_string();
        let parsed: InviteToken = text.parse().unwrap();
        assert_eq!(parsed, invite);
        assert_eq!(parsed.verify(&verifier, UnixMillis(999)), Ok(()));
        assert_eq!(
            parsed.verify(&verifier, UnixMillis(1_000)),
            Err(CredentialRejected::Expired)
        );

        let more_uses = InviteToken {
            max_uses: 500,
            ..invite
        };
        let reparsed: InviteToken = more_uses.to_string().parse().unwrap();
        assert_eq!(
            reparsed.verify(&verifier, UnixMillis(0)),
            Err(CredentialRejected::BadSignature)
        );
        assert_eq!(
            "short".parse::<InviteToken>(),
            Err(CredentialRejected::Malformed)
        );
    }

    #[test]
    fn display_names_follow_the_documented_rules() {
        assert!(DisplayName::new("Ada Lovelace").is_ok());
        assert!(DisplayName::new("日本語の名前").is_ok());
        assert!(DisplayName::new("é".repeat(MAX_DISPLAY_NAME_CHARS)).is_ok());
        for bad in [
            "",
            " padded",
            "padded ",
            "line\nbreak",
            &"x".repeat(MAX_DISPLAY_NAME_CHARS + 1),
            "Ada\u{202E}ecalevoL",
            "Ad\u{200B}a",
            "\u{2066}Ada\u{2069}",
            "Ada\u{FEFF}",
            "Ada\u{E0041}",
        ] {
            assert_eq!(DisplayName::new(bad), Err(InvalidDisplayName), "{bad:?}");
        }
    }

    #[test]
    fn profile_signature_binds_name_and_member() {
        let relay = relay().public_key();
        let member = SecretKey::from_seed([4; 32]);
        let verifier = member.public_key().verifier().unwrap();
        let profile = Profile::sign(
            &member,
            &relay,
            DisplayName::new("Ada").unwrap(),
            UnixMillis(5),
        );
        assert_eq!(profile.verify(&relay, &verifier), Ok(()));
        let renamed = Profile {
            display_name: DisplayName::new("Eve").unwrap(),
            ..profile
        };
        assert_eq!(
            renamed.verify(&relay, &verifier),
            Err(CredentialRejected::BadSignature)
        );
        let other = SecretKey::from_seed([5; 32])
            .public_key()
            .verifier()
            .unwrap();
        assert_eq!(
            profile.verify(&relay, &other),
            Err(CredentialRejected::WrongMember)
        );
    }
}
