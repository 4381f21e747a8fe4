//! Login: the relay sends a fresh nonce, the member signs it bound to the relay's key.

use crate::encoding::base64url_text_form;
use crate::identity::{BadSignature, PublicKey, SecretKey, Signature, Verifier};
use crate::signing::{Domain, SignedBytes};

/// 32 random bytes the relay sends in its challenge. Single-use and short-lived (relay policy).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginNonce(pub [u8; 32]);
base64url_text_form!(LoginNonce, 32);

impl std::fmt::Debug for LoginNonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginNonce({self})")
    }
}

/// The bytes a member signs to log in: `peerchat/v1/login\0 ‖ relay key ‖ nonce ‖ member key`.
/// The relay key and the purpose tag stop a relay from reusing the response anywhere else.
pub fn login_signed_bytes(
    relay: &PublicKey,
    nonce: &LoginNonce,
    member: &PublicKey,
) -> SignedBytes {
    SignedBytes::new(Domain::LoginResponse)
        .fixed(&relay.0)
        .fixed(&nonce.0)
        .fixed(&member.0)
}

/// The member's answer to a challenge.
pub fn sign_login(member: &SecretKey, relay: &PublicKey, nonce: &LoginNonce) -> Signature {
    member.sign(&login_signed_bytes(relay, nonce, &member.public_key()))
}

/// Checks a login answer for a challenge this relay issued.
pub fn verify_login(
    member: &Verifier,
    relay: &PublicKey,
    nonce: &LoginNonce,
    signature: &Signature,
) -> Result<(), BadSignature> {
    member.verify(
        &login_signed_bytes(relay, nonce, &member.public_key()),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn login_answer_is_bound_to_relay_nonce_and_member() {
        let relay = SecretKey::from_seed([1; 32]).public_key();
        let other_relay = SecretKey::from_seed([2; 32]).public_key();
        let member = SecretKey::from_seed([3; 32]);
        let verifier = member.public_key().verifier().unwrap();
        let nonce = LoginNonce([4; 32]);
        let signature = sign_login(&member, &relay, &nonce);
        assert_eq!(verify_login(&verifier, &relay, &nonce, &signature), Ok(()));
        assert!(verify_login(&verifier, &other_relay, &nonce, &signature).is_err());
        assert!(verify_login(&verifier, &relay, &LoginNonce([5; 32]), &signature).is_err());
        let impostor = SecretKey::from_seed([6; 32])
            .public_key()
            .verifier()
            .unwrap();
        assert!(verify_login(&impostor, &relay, &nonce, &signature).is_err());
    }
}
