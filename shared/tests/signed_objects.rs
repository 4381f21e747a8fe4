//! Property tests of signatures: honest objects verify; any altered field, forged signature or
//! signature from another domain is rejected; ids sort like the time that minted them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod strategies;

use peerchat_shared::identity::{PublicKey, SecretKey, Signature};
use peerchat_shared::ids::MessageIdGenerator;
use peerchat_shared::message::{ClientNonce, Draft, Envelope, EnvelopeRejected, MessageBody};
use peerchat_shared::signing::{Domain, SignedBytes};
use peerchat_shared::time::UnixMillis;
use proptest::prelude::*;
use strategies::{body, bytes, channel};

const DOMAINS: [Domain; 6] = Domain::SIGNING;

/// One honest envelope, stamped by the relay with seed `[1; 32]`.
fn stamped(
    author_seed: [u8; 32],
    draft_parts: (peerchat_shared::channel::ChannelName, [u8; 16], MessageBody),
    time: u64,
) -> (Envelope, SecretKey) {
    let relay = SecretKey::from_seed([1; 32]);
    let author = SecretKey::from_seed(author_seed);
    let (channel, nonce, body) = draft_parts;
    let draft = Draft::sign(
        &author,
        &relay.public_key(),
        channel,
        ClientNonce(nonce),
        body,
    );
    let verified = draft
        .verify(
            &relay.public_key(),
            &author.public_key().verifier().unwrap(),
        )
        .unwrap();
    let id = MessageIdGenerator::default()
        .next(UnixMillis(time), 42)
        .unwrap();
    (verified.seal(id, &relay), relay)
}

fn flip_bit(signature: Signature, bit: usize) -> Signature {
    let mut bytes = signature.0;
    bytes[bit / 8 % 64] ^= 1 << (bit % 8);
    Signature(bytes)
}

/// Each way of tampering with an envelope after the relay signed it.
#[derive(Debug, Clone)]
enum Tamper {
    AuthorSignatureBit(usize),
    RelaySignatureBit(usize),
    Body(MessageBody),
    Id([u8; 16]),
    Channel(peerchat_shared::channel::ChannelName),
    Nonce([u8; 16]),
    Author([u8; 32]),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (0..512usize).prop_map(Tamper::AuthorSignatureBit),
        (0..512usize).prop_map(Tamper::RelaySignatureBit),
        body().prop_map(Tamper::Body),
        bytes::<16>().prop_map(Tamper::Id),
        channel().prop_map(Tamper::Channel),
        bytes::<16>().prop_map(Tamper::Nonce),
        bytes::<32>().prop_map(Tamper::Author),
    ]
}

fn apply(envelope: &mut Envelope, tamper: Tamper) -> bool {
    use peerchat_shared::ids::MessageId;
    let before = envelope.clone();
    match tamper {
        Tamper::AuthorSignatureBit(bit) => {
            envelope.author_signature = flip_bit(envelope.author_signature, bit)
        }
        Tamper::RelaySignatureBit(bit) => {
            envelope.relay_signature = flip_bit(envelope.relay_signature, bit)
        }
        Tamper::Body(body) => envelope.body = body,
        Tamper::Id(id) => envelope.id = MessageId::from_bytes(id),
        Tamper::Channel(channel) => envelope.channel = channel,
        Tamper::Nonce(nonce) => envelope.nonce = ClientNonce(nonce),
        Tamper::Author(seed) => envelope.author = SecretKey::from_seed(seed).public_key(),
    }
    *envelope != before
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn honest_envelopes_verify(seed in bytes::<32>(), channel in channel(), nonce in bytes::<16>(), body in body(), time in 0u64..(1 << 48)) {
        let (envelope, relay) = stamped(seed, (channel, nonce, body), time);
        prop_assert_eq!(envelope.id.timestamp(), UnixMillis(time));
        prop_assert!(envelope.verify(&relay.public_key().verifier().unwrap()).is_ok());
    }

    #[test]
    fn altered_envelopes_are_rejected(seed in bytes::<32>(), channel in channel(), nonce in bytes::<16>(), body in body(), change in tamper()) {
        let (mut envelope, relay) = stamped(seed, (channel, nonce, body), 1_700_000_000_000);
        prop_assume!(apply(&mut envelope, change));
        let verdict = envelope.verify(&relay.public_key().verifier().unwrap());
        prop_assert!(matches!(
            verdict,
            Err(EnvelopeRejected::BadAuthorSignature | EnvelopeRejected::BadRelaySignature)
        ), "{:?}", verdict);
    }

    #[test]
    fn envelopes_from_another_relay_are_rejected(seed in bytes::<32>(), channel in channel(), nonce in bytes::<16>(), body in body(), other_relay in bytes::<32>()) {
        prop_assume!(other_relay != [1; 32]);
        let (envelope, _) = stamped(seed, (channel, nonce, body), 1);
        let impostor = SecretKey::from_seed(other_relay).public_key().verifier().unwrap();
        prop_assert!(envelope.verify(&impostor).is_err());
    }

    #[test]
    fn a_signature_never_verifies_in_another_domain(seed in bytes::<32>(), payload in prop::collection::vec(any::<u8>(), 0..64), signed_in in 0..6usize, checked_in in 0..6usize) {
        prop_assume!(signed_in != checked_in);
        let key = SecretKey::from_seed(seed);
        let signature = key.sign(&SignedBytes::new(DOMAINS[signed_in]).fixed(&payload));
        let verifier = key.public_key().verifier().unwrap();
        prop_assert!(verifier.verify(&SignedBytes::new(DOMAINS[checked_in]).fixed(&payload), &signature).is_err());
    }

    #[test]
    fn forged_signatures_do_not_verify(seed in bytes::<32>(), forged in bytes::<32>(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let key: PublicKey = SecretKey::from_seed(seed).public_key();
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&forged);
        signature[32..].copy_from_slice(&forged);
        let message = SignedBytes::new(Domain::Draft).fixed(&payload);
        prop_assert!(key.verifier().unwrap().verify(&message, &Signature(signature)).is_err());
    }

    #[test]
    fn ids_sort_like_the_times_that_minted_them(mut times in prop::collection::vec(0u64..(1 << 48), 1..50), randoms in prop::collection::vec(any::<u128>(), 50)) {
        let mut generator = MessageIdGenerator::default();
        let ids: Vec<_> = times.iter().zip(&randoms).map(|(time, random)| generator.next(UnixMillis(*time), *random).unwrap()).collect();
        // Minting order is id order, in bytes and in text, even when the clock goes backwards.
        prop_assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        prop_assert!(ids.windows(2).all(|pair| pair[0].to_string() < pair[1].to_string()));
        // With a clock that only moves forward, ids carry exactly the minting time.
        times.sort_unstable();
        times.dedup();
        let mut forward = MessageIdGenerator::default();
        for (time, random) in times.iter().zip(&randoms) {
            prop_assert_eq!(forward.next(UnixMillis(*time), *random).unwrap().timestamp(), UnixMillis(*time));
        }
    }
}
