//! Ed25519 identities: secret keys that never print, public keys with a text form, signatures,
//! and short fingerprints for people to compare.

use crate::encoding::base64url_text_form;
use crate::signing::SignedBytes;
use sha2::{Digest as _, Sha256};

/// A signing key. Its `Debug` output names only the public half, and it has no `Display`, so a
/// secret cannot end up in a log line by accident.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// The key whose 32-byte seed is `seed`. Callers draw the seed from a CSPRNG (the relay, the
    /// browser and the virtual client each have one); this crate never does.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The 32-byte seed, for writing a key file or an identity export. Handle with care.
    pub fn seed_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The verifier of this key's own signatures. A key made from a seed is a multiple of the
    /// base point, never of small order, so it needs none of [`PublicKey::verifier`]'s checks.
    pub fn verifier(&self) -> Verifier {
        Verifier(self.0.verifying_key())
    }

    pub fn sign(&self, message: &SignedBytes) -> Signature {
        use ed25519_dalek::Signer as _;
        Signature(self.0.sign(message.as_bytes()).to_bytes())
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretKey(public: {}, secret: redacted)",
            self.public_key()
        )
    }
}

/// An Ed25519 public key as its 32 bytes. Text form: unpadded base64url (43 characters).
/// Cheap to copy, compare and hash; [`PublicKey::verifier`] parses it for verification.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);
base64url_text_form!(PublicKey, 32);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// The bytes are not a valid Ed25519 public key (not a curve point, or a weak key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid Ed25519 public key")]
pub struct InvalidPublicKey;

/// The signature does not verify for this key and byte string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct BadSignature;

impl PublicKey {
    /// Parses the key for verification (about 5 µs). Parse once per session or peer and keep the
    /// [`Verifier`]; do not parse per message.
    pub fn verifier(&self) -> Result<Verifier, InvalidPublicKey> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| InvalidPublicKey)?;
        if key.is_weak() {
            return Err(InvalidPublicKey);
        }
        Ok(Verifier(key))
    }

    /// A short form for people to compare out of band: the first 10 bytes of SHA-256 of the key,
    /// as five groups of four lowercase hex digits, e.g. `3fa2 91c0 7d4e 0b18 aa07`.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0);
        let groups: Vec<String> = digest[..10]
            .chunks(2)
            .map(|pair| format!("{:02x}{:02x}", pair[0], pair[1]))
            .collect();
        groups.join(" ")
    }
}

/// A parsed public key, ready to verify signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier(ed25519_dalek::VerifyingKey);

impl Verifier {
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.to_bytes())
    }

    /// Strict verification (RFC 8032 with the malleability and small-order checks of
    /// `verify_strict`), so each message has exactly one valid signature per key.
    pub fn verify(&self, message: &SignedBytes, signature: &Signature) -> Result<(), BadSignature> {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message.as_bytes(), &signature)
            .map_err(|_| BadSignature)
    }
}

/// Checks many signatures at once: a single multi-scalar multiplication with random weights,
/// about twice as fast per signature as [`Verifier::verify`] in a batch of dozens. It passes
/// whenever every signature passes [`Verifier::verify`]; for a signature crafted by the holder
/// of its key with small-order components it may pass where strict verification fails, so
/// callers use it only where such a signature cannot arise (see `Envelope::verify_all`). An
/// error says some signature failed, not which.
pub fn verify_batch(checks: &[(&Verifier, &SignedBytes, &Signature)]) -> Result<(), BadSignature> {
    let messages: Vec<&[u8]> = checks
        .iter()
        .map(|(_, bytes, _)| bytes.as_bytes())
        .collect();
    let signatures: Vec<ed25519_dalek::Signature> = checks
        .iter()
        .map(|(_, _, signature)| ed25519_dalek::Signature::from_bytes(&signature.0))
        .collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = checks.iter().map(|(key, _, _)| key.0).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).map_err(|_| BadSignature)
}

/// An Ed25519 signature as its 64 bytes. Text form: unpadded base64url (86 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);
base64url_text_form!(Signature, 64);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::to_base64url;
    use crate::signing::Domain;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn secret_key_debug_shows_no_secret_material() {
        let seed = [0x42u8; 32];
        let key = SecretKey::from_seed(seed);
        let printed = format!("{key:?} {key:#?}");
        assert!(!printed.contains(&to_base64url(&seed)));
        assert!(!printed.contains(&"42".repeat(8)));
        assert!(!printed.contains("66, 66"));
        assert!(printed.contains(&key.public_key().to_string()));
    }

    #[test]
    fn signatures_verify_only_for_the_same_key_bytes_and_domain() {
        let key = SecretKey::from_seed([7; 32]);
        let verifier = key.public_key().verifier().unwrap();
        let message = SignedBytes::new(Domain::Draft).variable(b"hello");
        let signature = key.sign(&message);
        assert_eq!(verifier.verify(&message, &signature), Ok(()));

        let other_bytes = SignedBytes::new(Domain::Draft).variable(b"hellp");
        assert_eq!(verifier.verify(&other_bytes, &signature), Err(BadSignature));
        let other_domain = SignedBytes::new(Domain::Profile).variable(b"hello");
        assert_eq!(
            verifier.verify(&other_domain, &signature),
            Err(BadSignature)
        );
        let other_key = SecretKey::from_seed([8; 32])
            .public_key()
            .verifier()
            .unwrap();
        assert_eq!(other_key.verify(&message, &signature), Err(BadSignature));
    }

    #[test]
    fn public_key_text_form_round_trips() {
        let key = SecretKey::from_seed([1; 32]).public_key();
        let text = key.to_string();
        assert_eq!(text.len(), 43);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert!("not a key".parse::<PublicKey>().is_err());
    }

    #[test]
    fn weak_and_invalid_public_keys_are_refused() {
        // The identity point (small order) and a y-coordinate that is not on the curve.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey(identity).verifier(), Err(InvalidPublicKey));
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(PublicKey(off_curve).verifier(), Err(InvalidPublicKey));
    }

    #[test]
    fn fingerprint_is_five_groups_of_four_hex_digits() {
        let fingerprint = SecretKey::from_seed([1; 32]).public_key().fingerprint();
        let groups: Vec<&str> = fingerprint.split(' ').collect();
        assert_eq!(groups.len(), 5);
        assert!(groups
            .iter()
            .all(|group| group.len() == 4 && group.chars().all(|c| c.is_ascii_hexdigit())));
    }
}
