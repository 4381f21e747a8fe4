//! The hex test vectors in docs/protocol.md, recomputed from their inputs. Changing one byte of a
//! vector in the document, or of the signed layouts in the code, fails this test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use peerchat_shared::channel::ChannelName;
use peerchat_shared::chunk_tree::{leaf_hash, ChunkTree, CHUNK_BYTES};
use peerchat_shared::codec::encode;
use peerchat_shared::encoding::to_base64url;
use peerchat_shared::frames::{ClientToRelay, Login, RelayToClient};
use peerchat_shared::identity::SecretKey;
use peerchat_shared::ids::{AttachmentId, MessageId, MessageIdGenerator};
use peerchat_shared::login::{login_signed_bytes, sign_login, LoginNonce};
use peerchat_shared::membership::{
    invite_signed_bytes, membership_signed_bytes, profile_signed_bytes, DisplayName, InviteToken,
    MembershipCertificate, Profile, Role,
};
use peerchat_shared::message::{
    draft_signed_bytes, envelope_signed_bytes, ClientNonce, Draft, MessageBody,
};
use peerchat_shared::time::UnixMillis;
use peerchat_shared::transfer::{AttachmentKey, ChunkFrame};

const PROTOCOL_DOC: &str = include_str!("../../docs/protocol.md");

/// One ```` ```vector ```` block of the document: `key: value` lines.
struct Vector {
    name: String,
    fields: Vec<(String, String)>,
}

impl Vector {
    fn get(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("vector {} has no field {key}", self.name))
    }

    fn hex<const N: usize>(&self, key: &str) -> [u8; N] {
        from_hex(self.get(key))
            .try_into()
            .unwrap_or_else(|_| panic!("{key}: expected {N} bytes"))
    }

    fn number(&self, key: &str) -> u64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key}: expected a number"))
    }

    fn seed_key(&self, key: &str) -> SecretKey {
        SecretKey::from_seed(self.hex(key))
    }

    fn role(&self) -> Role {
        serde_json::from_value(serde_json::Value::String(self.get("role").into())).unwrap()
    }
}

fn vectors() -> Vec<Vector> {
    let mut vectors = Vec::new();
    let mut lines = PROTOCOL_DOC.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```vector" {
            continue;
        }
        let fields: Vec<(String, String)> = lines
            .by_ref()
            .take_while(|line| line.trim() != "```")
            .map(|line| {
                let (key, value) = line
                    .split_once(": ")
                    .expect("vector lines are `key: value`");
                (key.trim().to_owned(), value.to_owned())
            })
            .collect();
        let name = fields
            .iter()
            .find(|(key, _)| key == "vector")
            .expect("vector: name")
            .1
            .clone();
        vectors.push(Vector { name, fields });
    }
    vectors
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd-length hex");
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).expect("hex digit"))
        .collect()
}

/// Compares each computed output with the document; on mismatch prints the whole block as the
/// code computes it.
fn check(vector: &Vector, inputs: &[&str], outputs: Vec<(&str, String)>) {
    let known: Vec<&str> = ["vector"]
        .iter()
        .chain(inputs)
        .copied()
        .chain(outputs.iter().map(|(key, _)| *key))
        .collect();
    for (key, _) in &vector.fields {
        assert!(
            known.contains(&key.as_str()),
            "vector {}: unexpected field {key}",
            vector.name
        );
    }
    let mismatched: Vec<&str> = outputs
        .iter()
        .filter(|(key, value)| {
            vector
                .fields
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, v)| v)
                != Some(value)
        })
        .map(|(key, _)| *key)
        .collect();
    if !mismatched.is_empty() {
        let mut block = format!("```vector\nvector: {}\n", vector.name);
        for key in inputs {
            block += &format!("{key}: {}\n", vector.get(key));
        }
        for (key, value) in &outputs {
            block += &format!("{key}: {value}\n");
        }
        panic!(
            "vector {} differs in {mismatched:?}; the code computes:\n{block}```",
            vector.name
        );
    }
}

fn identity(vector: &Vector) {
    let key = vector.seed_key("seed").public_key();
    check(
        vector,
        &["seed"],
        vec![
            ("public_key_hex", to_hex(&key.0)),
            ("public_key_text", key.to_string()),
            ("fingerprint", key.fingerprint()),
        ],
    );
}

fn login(vector: &Vector) {
    let relay = vector.seed_key("relay_seed").public_key();
    let member = vector.seed_key("member_seed");
    let nonce = LoginNonce(vector.hex("nonce"));
    let signature = sign_login(&member, &relay, &nonce);
    let challenge = RelayToClient::Challenge {
        protocol: 1,
        relay,
        nonce,
    };
    let frame = ClientToRelay::Login(Box::new(Login {
        protocol: 1,
        key: member.public_key(),
        signature,
        certificate: None,
        invite: None,
        profile: None,
    }));
    check(
        vector,
        &["relay_seed", "member_seed", "nonce"],
        vec![
            ("challenge_frame", encode(&challenge)),
            (
                "signed_bytes",
                to_hex(login_signed_bytes(&relay, &nonce, &member.public_key()).as_bytes()),
            ),
            ("signature", to_hex(&signature.0)),
            ("login_frame", encode(&frame)),
        ],
    );
}

fn content_text(vector: &Vector) {
    let body = MessageBody::text(vector.get("text"));
    check(
        vector,
        &["text"],
        vec![
            ("canonical_bytes", to_hex(body.canonical_bytes().as_bytes())),
            ("content_digest", to_hex(&body.content_digest().0)),
        ],
    );
}

fn content_attachments(vector: &Vector) {
    let attachments = serde_json::from_str(vector.get("attachments")).unwrap();
    let body = MessageBody::with_attachments(vector.get("text"), attachments);
    assert_eq!(body.validate(), Ok(()));
    check(
        vector,
        &["text", "attachments"],
        vec![
            ("canonical_bytes", to_hex(body.canonical_bytes().as_bytes())),
            ("content_digest", to_hex(&body.content_digest().0)),
            ("body_json", serde_json::to_string(&body).unwrap()),
        ],
    );
}

/// The file of the chunk tree vector: `size` bytes, byte `i` being `i mod 251`.
fn patterned_file(size: usize) -> Vec<u8> {
    (0..size).map(|index| (index % 251) as u8).collect()
}

fn chunk_tree(vector: &Vector) {
    assert_eq!(vector.get("file"), "byte i is i mod 251");
    let size = vector.number("file_size") as usize;
    let index = vector.number("chunk") as usize;
    let file = patterned_file(size);
    let leaves = file.chunks(CHUNK_BYTES).map(leaf_hash).collect();
    let tree = ChunkTree::from_leaves(leaves);
    let proof: Vec<String> = tree.proof(index).iter().map(|hash| to_hex(hash)).collect();
    check(
        vector,
        &["file", "file_size", "chunk"],
        vec![
            ("chunk_count", tree.chunk_count().to_string()),
            ("root", to_hex(&tree.root())),
            ("proof", proof.join(" ")),
        ],
    );
}

fn chunk_frames(vector: &Vector) {
    assert_eq!(vector.get("file"), "byte i is i mod 251");
    let size = vector.number("file_size");
    let file = patterned_file(size as usize);
    let tree = ChunkTree::from_leaves(file.chunks(CHUNK_BYTES).map(leaf_hash).collect());
    let key = AttachmentKey {
        root: tree.root(),
        size,
    };
    let want = ChunkFrame::Want {
        key,
        chunks: vec![0, 1],
    };
    let missing = ChunkFrame::Missing {
        key,
        chunks: vec![1],
    };
    let last = file.chunks(CHUNK_BYTES).count() - 1;
    let chunk = ChunkFrame::Chunk {
        key,
        index: last as u64,
        proof: tree.proof(last),
        data: file[last * CHUNK_BYTES..].to_vec(),
    };
    let have = ChunkFrame::Have { key };
    for frame in [&want, &missing, &chunk, &have] {
        assert_eq!(ChunkFrame::decode(&frame.encode()).as_ref(), Ok(frame));
    }
    check(
        vector,
        &["file", "file_size"],
        vec![
            ("root", to_hex(&key.root)),
            ("chunk_want_0_1", to_hex(&want.encode())),
            ("chunk_missing_1", to_hex(&missing.encode())),
            ("chunk_1", to_hex(&chunk.encode())),
            ("chunk_1_relayed", to_base64url(&chunk.encode())),
            ("chunk_have", to_hex(&have.encode())),
        ],
    );
}

fn attachment_ids(vector: &Vector) {
    let message: MessageId = vector.get("message_id").parse().unwrap();
    let ids: Vec<String> = (0..3)
        .map(|index| AttachmentId::of(message, index).unwrap().to_string())
        .collect();
    check(
        vector,
        &["message_id"],
        vec![("attachment_ids", ids.join(" "))],
    );
}

fn message(vector: &Vector) {
    let relay = vector.seed_key("relay_seed");
    let author = vector.seed_key("author_seed");
    let channel = ChannelName::new(vector.get("channel")).unwrap();
    let nonce = ClientNonce(vector.hex("nonce"));
    let body = MessageBody::text(vector.get("text"));
    let digest = body.content_digest();
    let draft = Draft::sign(&author, &relay.public_key(), channel.clone(), nonce, body);
    let send_frame = encode(&ClientToRelay::Send {
        draft: draft.clone(),
    });
    let random = u128::from_be_bytes(
        [[0u8; 6].as_slice(), &vector.hex::<10>("id_random")]
            .concat()
            .try_into()
            .unwrap(),
    );
    let id = MessageIdGenerator::default()
        .next(UnixMillis(vector.number("time_ms")), random)
        .unwrap();
    let author_signature = draft.signature;
    let envelope = draft
        .verify(
            &relay.public_key(),
            &author.public_key().verifier().unwrap(),
        )
        .unwrap()
        .seal(id, &relay);
    check(
        vector,
        &[
            "relay_seed",
            "author_seed",
            "channel",
            "nonce",
            "text",
            "time_ms",
            "id_random",
        ],
        vec![
            (
                "draft_signed_bytes",
                to_hex(
                    draft_signed_bytes(
                        &relay.public_key(),
                        &author.public_key(),
                        &channel,
                        &nonce,
                        &digest,
                    )
                    .as_bytes(),
                ),
            ),
            ("author_signature", to_hex(&author_signature.0)),
            ("send_frame", send_frame),
            ("id", id.to_string()),
            (
                "envelope_signed_bytes",
                to_hex(
                    envelope_signed_bytes(
                        &id,
                        &channel,
                        &author.public_key(),
                        &nonce,
                        &digest,
                        &author_signature,
                    )
                    .as_bytes(),
                ),
            ),
            ("relay_signature", to_hex(&envelope.relay_signature.0)),
            (
                "message_frame",
                encode(&RelayToClient::Message { envelope }),
            ),
        ],
    );
}

fn membership(vector: &Vector) {
    let relay = vector.seed_key("relay_seed");
    let member = vector.seed_key("member_seed").public_key();
    let (issued_at, expires_at) = (
        UnixMillis(vector.number("issued_at")),
        UnixMillis(vector.number("expires_at")),
    );
    let certificate =
        MembershipCertificate::issue(&relay, member, vector.role(), issued_at, expires_at);
    check(
        vector,
        &[
            "relay_seed",
            "member_seed",
            "role",
            "issued_at",
            "expires_at",
        ],
        vec![
            (
                "signed_bytes",
                to_hex(
                    membership_signed_bytes(
                        &relay.public_key(),
                        &member,
                        vector.role(),
                        issued_at,
                        expires_at,
                    )
                    .as_bytes(),
                ),
            ),
            ("signature", to_hex(&certificate.signature.0)),
            (
                "certificate_json",
                serde_json::to_string(&certificate).unwrap(),
            ),
        ],
    );
}

fn invite(vector: &Vector) {
    let relay = vector.seed_key("relay_seed");
    let invite_id = vector.hex("invite_id");
    let max_uses = u32::try_from(vector.number("max_uses")).unwrap();
    let expires_at = UnixMillis(vector.number("expires_at"));
    let token = InviteToken::mint(&relay, invite_id, vector.role(), max_uses, expires_at);
    check(
        vector,
        &["relay_seed", "invite_id", "role", "max_uses", "expires_at"],
        vec![
            (
                "signed_bytes",
                to_hex(
                    invite_signed_bytes(
                        &relay.public_key(),
                        &invite_id,
                        vector.role(),
                        max_uses,
                        expires_at,
                    )
                    .as_bytes(),
                ),
            ),
            ("signature", to_hex(&token.signature.0)),
            ("token", token.to_string()),
        ],
    );
}

fn profile(vector: &Vector) {
    let relay = vector.seed_key("relay_seed").public_key();
    let member = vector.seed_key("member_seed");
    let name = DisplayName::new(vector.get("display_name")).unwrap();
    let updated_at = UnixMillis(vector.number("updated_at"));
    let profile = Profile::sign(&member, &relay, name.clone(), updated_at);
    check(
        vector,
        &["relay_seed", "member_seed", "display_name", "updated_at"],
        vec![
            (
                "signed_bytes",
                to_hex(
                    profile_signed_bytes(&relay, &member.public_key(), &name, updated_at)
                        .as_bytes(),
                ),
            ),
            ("signature", to_hex(&profile.signature.0)),
            ("profile_json", serde_json::to_string(&profile).unwrap()),
        ],
    );
}

#[test]
fn protocol_document_vectors_match_the_implementation() {
    let vectors = vectors();
    let mut names: Vec<&str> = vectors.iter().map(|vector| vector.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "attachment_ids",
            "chunk_frames",
            "chunk_tree",
            "content_attachments",
            "content_text",
            "identity",
            "invite",
            "login",
            "membership",
            "message",
            "profile"
        ],
        "docs/protocol.md must hold exactly one vector of each kind"
    );
    for vector in &vectors {
        match vector.name.as_str() {
            "identity" => identity(vector),
            "login" => login(vector),
            "content_text" => content_text(vector),
            "content_attachments" => content_attachments(vector),
            "chunk_tree" => chunk_tree(vector),
            "chunk_frames" => chunk_frames(vector),
            "attachment_ids" => attachment_ids(vector),
            "message" => message(vector),
            "membership" => membership(vector),
            "invite" => invite(vector),
            "profile" => profile(vector),
            other => panic!("unknown vector {other}"),
        }
    }
}
