//! Messages: the body a member writes, the draft they sign, and the envelope the relay stamps.
//!
//! Flow: the member builds a [`MessageBody`], signs a [`Draft`] over its content digest; the relay
//! checks the draft with [`Draft::verify`], stamps it with an id and its own signature
//! ([`VerifiedDraft::seal`]); every receiver, relay-connected or peer-to-peer, checks the
//! [`Envelope`] with [`Envelope::verify`] before storing it. Only a [`VerifiedEnvelope`] may be
//! stored.

use crate::channel::ChannelName;
use crate::encoding::base64url_text_form;
use crate::identity::{
    verify_batch, BadSignature, InvalidPublicKey, PublicKey, SecretKey, Signature, Verifier,
};
use crate::ids::MessageId;
use crate::limits::{
    MAX_ATTACHMENTS, MAX_ATTACHMENT_BYTES, MAX_ATTACHMENT_NAME_BYTES, MAX_IMAGE_SIDE,
    MAX_MEDIA_TYPE_BYTES, MAX_PREVIEW_BYTES, MAX_TEXT_BYTES,
};
use crate::membership::is_format_character;
use crate::signing::{Domain, SignedBytes};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;

/// 16 random bytes chosen by the author for each message. The relay answers a resend with the
/// same nonce with the same envelope, and peers treat (author, nonce) as the message's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientNonce(pub [u8; 16]);
base64url_text_form!(ClientNonce, 16);

/// A SHA-256 digest: of a message's canonical content, or of an attachment's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);
base64url_text_form!(Sha256Digest, 32);

macro_rules! debug_as_text {
    ($($type:ident),*) => {$(
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({self})", stringify!($type))
            }
        }
    )*};
}
debug_as_text!(ClientNonce, Sha256Digest);

/// A file a message carries. The description is signed with the message; the bytes travel
/// peer to peer, chunk by chunk, each checked against `root` (see [`crate::chunk_tree`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name as given by the author (display and the name of a saved file, never a path).
    pub name: String,
    /// Media type such as `image/png`, as declared by the author.
    pub media_type: String,
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, what `sha256sum` prints for the saved file.
    pub sha256: Sha256Digest,
    /// Root of the chunk tree over the bytes.
    pub root: Sha256Digest,
    /// For an image: its shape and a placeholder to show until the bytes arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
}

/// An image attachment's size in pixels and a BlurHash of it (a few dozen characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub preview: String,
}

/// What a member says. Serialised with a `kind` tag: `{"kind":"text","text":"…"}`, with
/// `"attachments":[…]` when it carries files (then the text is a caption and may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "UncheckedBody")]
pub enum MessageBody {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum UncheckedBody {
    Text {
        text: String,
        #[serde(default)]
        attachments: Vec<Attachment>,
    },
}

impl TryFrom<UncheckedBody> for MessageBody {
    type Error = InvalidBody;
    fn try_from(unchecked: UncheckedBody) -> Result<Self, Self::Error> {
        let UncheckedBody::Text { text, attachments } = unchecked;
        let body = MessageBody::Text { text, attachments };
        body.validate()?;
        Ok(body)
    }
}

/// Why a message body breaks the protocol's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBody {
    #[error("message text is empty")]
    EmptyText,
    #[error("message text is longer than {MAX_TEXT_BYTES} bytes")]
    TextTooLong,
    #[error("a message carries at most {MAX_ATTACHMENTS} attachments")]
    TooManyAttachments,
    #[error("attachment is larger than {MAX_ATTACHMENT_BYTES} bytes")]
    AttachmentTooLarge,
    #[error(
        "attachment name must be 1 to {MAX_ATTACHMENT_NAME_BYTES} bytes, without control or format characters, slashes or backslashes, and not . or .."
    )]
    BadAttachmentName,
    #[error("media type must look like type/subtype and be at most {MAX_MEDIA_TYPE_BYTES} bytes")]
    BadMediaType,
    #[error(
        "an image's width and height are 1 to {MAX_IMAGE_SIDE} pixels and its preview a BlurHash of at most {MAX_PREVIEW_BYTES} bytes"
    )]
    BadImageInfo,
}

const CONTENT_KIND_TEXT: u8 = 1;
// 2 was a single-attachment body of an earlier draft of the protocol; it is never reused.
const CONTENT_KIND_TEXT_WITH_ATTACHMENTS: u8 = 3;

impl MessageBody {
    pub fn text(text: impl Into<String>) -> Self {
        MessageBody::Text {
            text: text.into(),
            attachments: Vec::new(),
        }
    }

    /// A caption (possibly empty) and the files it goes with.
    pub fn with_attachments(text: impl Into<String>, attachments: Vec<Attachment>) -> Self {
        MessageBody::Text {
            text: text.into(),
            attachments,
        }
    }

    pub fn text_str(&self) -> &str {
        match self {
            MessageBody::Text { text, .. } => text,
        }
    }

    pub fn attachments(&self) -> &[Attachment] {
        match self {
            MessageBody::Text { attachments, .. } => attachments,
        }
    }

    pub fn validate(&self) -> Result<(), InvalidBody> {
        let MessageBody::Text { text, attachments } = self;
        if text.is_empty() && attachments.is_empty() {
            return Err(InvalidBody::EmptyText);
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(InvalidBody::TextTooLong);
        }
        if attachments.len() > MAX_ATTACHMENTS {
            return Err(InvalidBody::TooManyAttachments);
        }
        attachments.iter().try_for_each(validate_attachment)
    }

    /// The canonical encoding whose SHA-256 is the content digest that both signatures cover.
    pub fn canonical_bytes(&self) -> SignedBytes {
        let bytes = SignedBytes::new(Domain::Content);
        let MessageBody::Text { text, attachments } = self;
        if attachments.is_empty() {
            return bytes.u8(CONTENT_KIND_TEXT).variable(text.as_bytes());
        }
        let count = u8::try_from(attachments.len()).unwrap_or(u8::MAX);
        let bytes = bytes
            .u8(CONTENT_KIND_TEXT_WITH_ATTACHMENTS)
            .variable(text.as_bytes())
            .u8(count);
        attachments.iter().fold(bytes, canonical_attachment)
    }

    pub fn content_digest(&self) -> Sha256Digest {
        Sha256Digest(Sha256::digest(self.canonical_bytes().as_bytes()).into())
    }
}

fn canonical_attachment(bytes: SignedBytes, attachment: &Attachment) -> SignedBytes {
    let bytes = bytes
        .fixed(&attachment.sha256.0)
        .fixed(&attachment.root.0)
        .u64(attachment.size)
        .variable(attachment.media_type.as_bytes())
        .variable(attachment.name.as_bytes());
    match &attachment.image {
        None => bytes.u8(0),
        Some(image) => bytes
            .u8(1)
            .u32(image.width)
            .u32(image.height)
            .variable(image.preview.as_bytes()),
    }
}

fn validate_attachment(attachment: &Attachment) -> Result<(), InvalidBody> {
    if attachment.size > MAX_ATTACHMENT_BYTES {
        return Err(InvalidBody::AttachmentTooLarge);
    }
    if !is_file_name(&attachment.name) {
        return Err(InvalidBody::BadAttachmentName);
    }
    let media_type_ok = attachment.media_type.len() <= MAX_MEDIA_TYPE_BYTES
        && matches!(attachment.media_type.split_once('/'), Some((kind, sub)) if is_token(kind) && is_token(sub));
    if !media_type_ok {
        return Err(InvalidBody::BadMediaType);
    }
    match &attachment.image {
        Some(image) if !is_image_info(image) => Err(InvalidBody::BadImageInfo),
        _ => Ok(()),
    }
}

/// A name the protocol accepts for a file called `name` on the author's system: forbidden
/// characters become `_`, a name too long is cut (at a character boundary), an empty one or
/// `.` or `..` becomes `file`.
pub fn attachment_name_from(name: &str) -> String {
    let mut safe = String::new();
    for c in name.chars() {
        let c = if c.is_control() || is_format_character(c) || c == '/' || c == '\\' {
            '_'
        } else {
            c
        };
        if safe.len() + c.len_utf8() > MAX_ATTACHMENT_NAME_BYTES {
            break;
        }
        safe.push(c);
    }
    if safe.is_empty() || safe == "." || safe == ".." {
        return "file".into();
    }
    safe
}

/// The media type to describe a file with, from what the author's system declared: that type
/// in lower case when the protocol accepts it, else `application/octet-stream`.
pub fn media_type_from(declared: &str) -> String {
    let lower = declared.trim().to_ascii_lowercase();
    let accepted = lower.len() <= MAX_MEDIA_TYPE_BYTES
        && matches!(lower.split_once('/'), Some((kind, sub)) if is_token(kind) && is_token(sub));
    if accepted {
        lower
    } else {
        "application/octet-stream".into()
    }
}

/// A file's name and never a path: no control or format characters (a bidi control could make
/// `invoice\u{202E}fdp.exe` read as `invoiceexe.pdf`), no path separators, not `.` or `..`.
fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ATTACHMENT_NAME_BYTES
        && !name
            .chars()
            .any(|c| c.is_control() || is_format_character(c) || c == '/' || c == '\\')
        && name != "."
        && name != ".."
}

fn is_image_info(image: &ImageInfo) -> bool {
    let side = 1..=MAX_IMAGE_SIDE;
    side.contains(&image.width) && side.contains(&image.height) && is_blurhash(&image.preview)
}

/// BlurHash's shape: its base83 alphabet, and the length its first character (the number of
/// components) implies.
fn is_blurhash(text: &str) -> bool {
    const BASE83: &[u8] =
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
    let Some(size_flag) = text
        .bytes()
        .next()
        .and_then(|first| BASE83.iter().position(|&c| c == first))
    else {
        return false;
    };
    let (x, y) = (size_flag % 9 + 1, size_flag / 9 + 1);
    y <= 9
        && text.len() <= MAX_PREVIEW_BYTES
        && text.len() == 4 + 2 * x * y
        && text.bytes().all(|byte| BASE83.contains(&byte))
}

/// An RFC 6838 restricted name: letters, digits and `!#$&-^_.+`, starting with a letter or digit.
fn is_token(part: &str) -> bool {
    part.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// The bytes an author signs: `peerchat/v1/draft\0 ‖ relay key ‖ author key ‖ channel (var) ‖
/// nonce ‖ content digest`. The relay key binds the message to one community.
pub fn draft_signed_bytes(
    relay: &PublicKey,
    author: &PublicKey,
    channel: &ChannelName,
    nonce: &ClientNonce,
    content_digest: &Sha256Digest,
) -> SignedBytes {
    SignedBytes::new(Domain::Draft)
        .fixed(&relay.0)
        .fixed(&author.0)
        .variable(channel.as_str().as_bytes())
        .fixed(&nonce.0)
        .fixed(&content_digest.0)
}

/// A message as its author sends it to the relay. The author is the session's key: it is not a
/// field, so a member cannot send in someone else's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub channel: ChannelName,
    pub nonce: ClientNonce,
    pub body: MessageBody,
    pub signature: Signature,
}

/// A draft whose author signature was checked against the session's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDraft {
    draft: Draft,
    author: PublicKey,
    content_digest: Sha256Digest,
}

impl Draft {
    /// Signs `body` for `channel` as `author`, for the relay whose key is `relay`.
    pub fn sign(
        author: &SecretKey,
        relay: &PublicKey,
        channel: ChannelName,
        nonce: ClientNonce,
        body: MessageBody,
    ) -> Self {
        let digest = body.content_digest();
        let bytes = draft_signed_bytes(relay, &author.public_key(), &channel, &nonce, &digest);
        Self {
            signature: author.sign(&bytes),
            channel,
            nonce,
            body,
        }
    }

    /// Checks the body's rules and the author's signature; `author` is the sender's session key.
    pub fn verify(
        self,
        relay: &PublicKey,
        author: &Verifier,
    ) -> Result<VerifiedDraft, BadSignature> {
        let content_digest = self.body.content_digest();
        let author_key = author.public_key();
        let bytes = draft_signed_bytes(
            relay,
            &author_key,
            &self.channel,
            &self.nonce,
            &content_digest,
        );
        author.verify(&bytes, &self.signature)?;
        Ok(VerifiedDraft {
            draft: self,
            author: author_key,
            content_digest,
        })
    }
}

/// The bytes the relay signs: `peerchat/v1/envelope\0 ‖ id (16) ‖ channel (var) ‖ author key ‖
/// nonce ‖ content digest ‖ author signature`.
pub fn envelope_signed_bytes(
    id: &MessageId,
    channel: &ChannelName,
    author: &PublicKey,
    nonce: &ClientNonce,
    content_digest: &Sha256Digest,
    author_signature: &Signature,
) -> SignedBytes {
    SignedBytes::new(Domain::Envelope)
        .fixed(&id.to_bytes())
        .variable(channel.as_str().as_bytes())
        .fixed(&author.0)
        .fixed(&nonce.0)
        .fixed(&content_digest.0)
        .fixed(&author_signature.0)
}

impl VerifiedDraft {
    pub fn author(&self) -> &PublicKey {
        &self.author
    }

    pub fn draft(&self) -> &Draft {
        &self.draft
    }

    /// Stamps the draft with the relay's id (and so its time) and signature.
    pub fn seal(self, id: MessageId, relay: &SecretKey) -> Envelope {
        self.seal_with_receipt(id, relay).0
    }

    /// Seals the draft as [`VerifiedDraft::seal`] does, and returns what rebuilds the envelope
    /// from a resend of the same draft without keeping its body.
    pub fn seal_with_receipt(self, id: MessageId, relay: &SecretKey) -> (Envelope, SealReceipt) {
        let bytes = self.envelope_signed_bytes(&id);
        let receipt = SealReceipt {
            id,
            sealed_digest: Sha256Digest(Sha256::digest(bytes.as_bytes()).into()),
            relay_signature: relay.sign(&bytes),
        };
        (self.into_envelope(&receipt), receipt)
    }

    /// The envelope this same draft was sealed into earlier, or `None` when this draft differs
    /// from that one (another channel, body or signature under the same nonce).
    pub fn reseal(self, receipt: &SealReceipt) -> Option<Envelope> {
        let bytes = self.envelope_signed_bytes(&receipt.id);
        let digest = Sha256Digest(Sha256::digest(bytes.as_bytes()).into());
        (digest == receipt.sealed_digest).then(|| self.into_envelope(receipt))
    }

    fn envelope_signed_bytes(&self, id: &MessageId) -> SignedBytes {
        envelope_signed_bytes(
            id,
            &self.draft.channel,
            &self.author,
            &self.draft.nonce,
            &self.content_digest,
            &self.draft.signature,
        )
    }

    fn into_envelope(self, receipt: &SealReceipt) -> Envelope {
        let Draft {
            channel,
            nonce,
            body,
            signature,
        } = self.draft;
        Envelope {
            id: receipt.id,
            channel,
            author: self.author,
            nonce,
            body,
            author_signature: signature,
            relay_signature: receipt.relay_signature,
        }
    }
}

/// What a relay keeps of a sealed draft to answer a resend with the same envelope: its id, its
/// signature and a digest of what it signed (112 bytes, whatever the body's size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealReceipt {
    pub id: MessageId,
    sealed_digest: Sha256Digest,
    relay_signature: Signature,
}

/// A stamped message as the relay delivers it and as peers exchange it. Its time is `id`'s
/// timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: MessageId,
    pub channel: ChannelName,
    pub author: PublicKey,
    pub nonce: ClientNonce,
    pub body: MessageBody,
    pub author_signature: Signature,
    pub relay_signature: Signature,
}

/// Why an envelope must not be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeRejected {
    #[error("the author key is not a valid Ed25519 key")]
    InvalidAuthorKey(#[from] InvalidPublicKey),
    #[error("the author's signature does not verify")]
    BadAuthorSignature,
    #[error("the relay's signature does not verify")]
    BadRelaySignature,
    #[error("the body breaks the protocol's rules: {0}")]
    InvalidBody(#[from] InvalidBody),
}

/// The first envelope of a batch that failed [`Envelope::verify_all`], and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRejection {
    pub id: MessageId,
    pub reason: EnvelopeRejected,
}

impl BatchRejection {
    /// Checks envelopes one by one with `check`; all pass, or the first failure is named.
    pub fn check_each(
        envelopes: Vec<Envelope>,
        mut check: impl FnMut(Envelope) -> Result<VerifiedEnvelope, EnvelopeRejected>,
    ) -> Result<Vec<VerifiedEnvelope>, BatchRejection> {
        envelopes
            .into_iter()
            .map(|envelope| {
                let id = envelope.id;
                check(envelope).map_err(|reason| BatchRejection { id, reason })
            })
            .collect()
    }
}

impl Envelope {
    /// Checks the body's rules, the author's signature (bound to `relay`) and the relay's
    /// signature. The only way to obtain a [`VerifiedEnvelope`].
    pub fn verify(self, relay: &Verifier) -> Result<VerifiedEnvelope, EnvelopeRejected> {
        self.body.validate()?;
        let author = self.author.verifier()?;
        let (draft_bytes, envelope_bytes) = self.signed_strings(&relay.public_key());
        author
            .verify(&draft_bytes, &self.author_signature)
            .map_err(|_| EnvelopeRejected::BadAuthorSignature)?;
        relay
            .verify(&envelope_bytes, &self.relay_signature)
            .map_err(|_| EnvelopeRejected::BadRelaySignature)?;
        Ok(VerifiedEnvelope(self))
    }

    /// The byte strings the author and the relay signed.
    fn signed_strings(&self, relay_key: &PublicKey) -> (SignedBytes, SignedBytes) {
        let digest = self.body.content_digest();
        let draft_bytes =
            draft_signed_bytes(relay_key, &self.author, &self.channel, &self.nonce, &digest);
        let envelope_bytes = envelope_signed_bytes(
            &self.id,
            &self.channel,
            &self.author,
            &self.nonce,
            &digest,
            &self.author_signature,
        );
        (draft_bytes, envelope_bytes)
    }

    /// Verifies envelopes together, with the same outcome as [`Envelope::verify`] on each
    /// (the first failure is named): all signatures (author and relay) are checked in one
    /// batch, about twice as fast as one by one; only if anything fails are the envelopes
    /// verified one by one, to name the first bad one.
    ///
    /// Batch and strict verification can disagree only on a signature its key's holder
    /// crafted with small-order components. Authors cannot get one stamped (the relay verifies
    /// every draft strictly before it signs), and the relay's own signatures are the relay's
    /// word anyway, so every envelope gets the same verdict either way.
    pub fn verify_all(
        envelopes: Vec<Envelope>,
        relay: &Verifier,
    ) -> Result<Vec<VerifiedEnvelope>, BatchRejection> {
        if envelopes.len() > 1 && Self::all_verify_in_batch(&envelopes, relay) {
            return Ok(envelopes.into_iter().map(VerifiedEnvelope).collect());
        }
        BatchRejection::check_each(envelopes, |envelope| envelope.verify(relay))
    }

    /// True if every body follows the rules, every author key is valid, and all signatures
    /// verify as one batch.
    fn all_verify_in_batch(envelopes: &[Envelope], relay: &Verifier) -> bool {
        let relay_key = relay.public_key();
        let mut authors: HashMap<PublicKey, Verifier> = HashMap::new();
        let mut signed = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            if envelope.body.validate().is_err() {
                return false;
            }
            let author = match authors.get(&envelope.author) {
                Some(author) => author.clone(),
                None => {
                    let Ok(author) = envelope.author.verifier() else {
                        return false;
                    };
                    authors.insert(envelope.author, author.clone());
                    author
                }
            };
            let (draft_bytes, envelope_bytes) = envelope.signed_strings(&relay_key);
            signed.push((author, draft_bytes, envelope_bytes));
        }
        let checks: Vec<(&Verifier, &SignedBytes, &Signature)> = signed
            .iter()
            .zip(envelopes)
            .flat_map(|((author, draft_bytes, envelope_bytes), envelope)| {
                [
                    (author, draft_bytes, &envelope.author_signature),
                    (relay, envelope_bytes, &envelope.relay_signature),
                ]
            })
            .collect();
        verify_batch(&checks).is_ok()
    }
}

/// An envelope whose author and relay signatures were both checked. Stores accept only these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEnvelope(Envelope);

impl VerifiedEnvelope {
    pub fn envelope(&self) -> &Envelope {
        &self.0
    }

    pub fn into_envelope(self) -> Envelope {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn check_rejected(body: MessageBody, expected: InvalidBody) {
        assert_eq!(body.validate(), Err(expected));
        let json = serde_json::to_string(&body).unwrap();
        assert!(
            serde_json::from_str::<MessageBody>(&json).is_err(),
            "{json}"
        );
    }

    fn file(name: &str, media_type: &str, size: u64) -> Attachment {
        Attachment {
            name: name.into(),
            media_type: media_type.into(),
            size,
            sha256: Sha256Digest([9; 32]),
            root: Sha256Digest([8; 32]),
            image: None,
        }
    }

    fn attachment(name: &str, media_type: &str, size: u64) -> MessageBody {
        MessageBody::with_attachments("", vec![file(name, media_type, size)])
    }

    fn image(width: u32, height: u32, preview: &str) -> MessageBody {
        let mut photo = file("cat.jpg", "image/jpeg", 1_000);
        photo.image = Some(ImageInfo {
            width,
            height,
            preview: preview.into(),
        });
        MessageBody::with_attachments("a cat", vec![photo])
    }

    #[test]
    fn message_bodies_follow_the_documented_rules() {
        check_rejected(MessageBody::text(""), InvalidBody::EmptyText);
        check_rejected(
            MessageBody::text("x".repeat(MAX_TEXT_BYTES + 1)),
            InvalidBody::TextTooLong,
        );
        assert_eq!(
            MessageBody::text("é".repeat(MAX_TEXT_BYTES / 2)).validate(),
            Ok(())
        );
        assert_eq!(attachment("cat.png", "image/png", 10).validate(), Ok(()));
        for name in [
            "",
            "a\nb",
            "../etc/passwd",
            "a/b",
            "a\\b",
            ".",
            "..",
            "invoice\u{202E}fdp.exe",
        ] {
            check_rejected(
                attachment(name, "image/png", 1),
                InvalidBody::BadAttachmentName,
            );
        }
        check_rejected(attachment("a", "image", 1), InvalidBody::BadMediaType);
        check_rejected(attachment("a", "image/<b>", 1), InvalidBody::BadMediaType);
        check_rejected(
            attachment("a", "image/png", MAX_ATTACHMENT_BYTES + 1),
            InvalidBody::AttachmentTooLarge,
        );
        let eleven = vec![file("a", "text/plain", 1); MAX_ATTACHMENTS + 1];
        check_rejected(
            MessageBody::with_attachments("", eleven),
            InvalidBody::TooManyAttachments,
        );
    }

    #[test]
    fn any_file_name_or_declared_type_becomes_one_the_protocol_accepts() {
        for (given, expected) in [
            ("cat.jpg", "cat.jpg"),
            ("../etc/passwd", ".._etc_passwd"),
            ("a\\b\u{7}c", "a_b_c"),
            ("invoice\u{202e}fdp.exe", "invoice_fdp.exe"),
            ("", "file"),
            ("..", "file"),
        ] {
            let name = attachment_name_from(given);
            assert_eq!(name, expected);
            assert!(is_file_name(&name));
        }
        let long = attachment_name_from(&"é".repeat(200));
        assert!(long.len() <= MAX_ATTACHMENT_NAME_BYTES && is_file_name(&long));
        assert_eq!(media_type_from("IMAGE/PNG"), "image/png");
        assert_eq!(media_type_from(""), "application/octet-stream");
        assert_eq!(
            media_type_from("text/html; charset=utf-8"),
            "application/octet-stream"
        );
    }

    #[test]
    fn an_image_has_a_shape_and_a_blurhash_preview() {
        let blurhash = "LEHV6nWB2yk8pyo0adR*.7kCMdnj";
        assert_eq!(image(640, 480, blurhash).validate(), Ok(()));
        for bad in [
            image(0, 480, blurhash),
            image(640, MAX_IMAGE_SIDE + 1, blurhash),
            image(640, 480, ""),
            image(640, 480, &blurhash[..27]),
            image(640, 480, "LEHV6nWB2yk8pyo0adR*.7kCMdn<"),
            // Ten rows of components: beyond BlurHash's nine.
            image(640, 480, &format!("}}{}", "0".repeat(23))),
        ] {
            check_rejected(bad, InvalidBody::BadImageInfo);
        }
    }

    /// `count` envelopes by two authors, stamped by `relay`.
    fn stamped(relay: &SecretKey, count: usize) -> Vec<Envelope> {
        let authors = [SecretKey::from_seed([2; 32]), SecretKey::from_seed([3; 32])];
        let channel = ChannelName::new("general").unwrap();
        let mut ids = crate::ids::MessageIdGenerator::default();
        (0..count)
            .map(|index| {
                let author = &authors[index % 2];
                let draft = Draft::sign(
                    author,
                    &relay.public_key(),
                    channel.clone(),
                    ClientNonce((index as u128).to_be_bytes()),
                    MessageBody::text(format!("message {index}")),
                );
                let id = ids
                    .next(crate::time::UnixMillis(1_000 + index as u64), 0)
                    .unwrap();
                draft
                    .verify(
                        &relay.public_key(),
                        &author.public_key().verifier().unwrap(),
                    )
                    .unwrap()
                    .seal(id, relay)
            })
            .collect()
    }

    #[test]
    fn a_resent_draft_is_resealed_into_the_same_envelope_and_a_changed_one_is_not() {
        let relay = SecretKey::from_seed([1; 32]);
        let author = SecretKey::from_seed([2; 32]);
        let verifier = author.public_key().verifier().unwrap();
        let id = crate::ids::MessageIdGenerator::default()
            .next(crate::time::UnixMillis(1_000), 0)
            .unwrap();
        let draft = |channel: &str, text: &str| {
            Draft::sign(
                &author,
                &relay.public_key(),
                ChannelName::new(channel).unwrap(),
                ClientNonce([7; 16]),
                MessageBody::text(text),
            )
            .verify(&relay.public_key(), &verifier)
            .unwrap()
        };
        let (sealed, receipt) = draft("general", "hello").seal_with_receipt(id, &relay);
        assert_eq!(sealed, draft("general", "hello").seal(id, &relay));
        assert_eq!(draft("general", "hello").reseal(&receipt), Some(sealed));
        assert_eq!(draft("general", "hullo").reseal(&receipt), None);
        assert_eq!(draft("random", "hello").reseal(&receipt), None);
    }

    #[test]
    fn envelopes_verified_together_get_the_verdict_each_gets_alone() {
        let relay = SecretKey::from_seed([1; 32]);
        let verifier = relay.public_key().verifier().unwrap();
        let honest = stamped(&relay, 40);
        let verified = Envelope::verify_all(honest.clone(), &verifier).unwrap();
        assert_eq!(
            verified
                .into_iter()
                .map(VerifiedEnvelope::into_envelope)
                .collect::<Vec<_>>(),
            honest
        );
        let damages: [fn(&mut Envelope); 5] = [
            |envelope| envelope.body = MessageBody::text("altered"),
            |envelope| envelope.author_signature.0[5] ^= 1,
            |envelope| envelope.relay_signature.0[40] ^= 1,
            |envelope| envelope.body = MessageBody::text(""),
            |envelope| envelope.author = PublicKey([0; 32]),
        ];
        for position in [0, 17, 39] {
            for damage in damages {
                let mut batch = honest.clone();
                damage(&mut batch[position]);
                let alone = batch[position].clone().verify(&verifier).unwrap_err();
                assert_eq!(
                    Envelope::verify_all(batch.clone(), &verifier),
                    Err(BatchRejection {
                        id: batch[position].id,
                        reason: alone
                    })
                );
            }
        }
        let mut twice_damaged = honest.clone();
        twice_damaged[3].relay_signature.0[0] ^= 1;
        twice_damaged[20].body = MessageBody::text("");
        assert_eq!(
            Envelope::verify_all(twice_damaged.clone(), &verifier),
            Err(BatchRejection {
                id: twice_damaged[3].id,
                reason: EnvelopeRejected::BadRelaySignature
            }),
            "the first bad envelope is named"
        );
        let other_relay = SecretKey::from_seed([9; 32])
            .public_key()
            .verifier()
            .unwrap();
        assert_eq!(
            Envelope::verify_all(honest.clone(), &other_relay),
            Err(BatchRejection {
                id: honest[0].id,
                reason: EnvelopeRejected::BadAuthorSignature
            }),
            "drafts are bound to the relay they were written for"
        );
    }

    #[test]
    fn content_digest_distinguishes_kinds_and_field_boundaries() {
        let a = attachment("ab", "image/png", 1).content_digest();
        let b = attachment("b", "image/pnga", 1).content_digest();
        assert_ne!(a, b);
        assert_ne!(
            MessageBody::text("x").content_digest(),
            MessageBody::text("y").content_digest()
        );
        let two = MessageBody::with_attachments(
            "",
            vec![file("a", "text/plain", 1), file("a", "text/plain", 1)],
        );
        assert_ne!(
            attachment("a", "text/plain", 1).content_digest(),
            two.content_digest()
        );
        assert_ne!(
            image(1, 2, "00000").content_digest(),
            image(2, 1, "00000").content_digest()
        );
    }
}
