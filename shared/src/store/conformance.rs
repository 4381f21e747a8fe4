//! The behaviour every [`HistoryStore`] must have, as one async suite. The in-memory store runs
//! it natively; the IndexedDB store runs it in headless Chromium.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: a failed expectation is a failed test"
)]

use super::HistoryStore;
use crate::channel::ChannelName;
use crate::identity::SecretKey;
use crate::ids::{MessageId, MessageIdGenerator};
use crate::message::{ClientNonce, Draft, MessageBody, VerifiedEnvelope};
use crate::time::UnixMillis;

/// `count` honest envelopes in `channel`, one per millisecond from `start_ms`, signed by a fixed
/// author and relay. Deterministic; the channel name goes into the ids' random bits, so, as from
/// a real relay, ids differ between channels.
pub fn envelopes(channel: &str, start_ms: u64, count: usize) -> Vec<VerifiedEnvelope> {
    let channel_bits = channel.bytes().fold(0u128, |bits, byte| {
        bits.wrapping_mul(31).wrapping_add(u128::from(byte))
    });
    envelopes_with_id_bits(
        channel,
        start_ms,
        count,
        (channel_bits << 32) & ((1 << 80) - 1),
    )
}

/// Like [`envelopes`], with the ids' 80 random bits chosen by the caller (to make ids collide).
pub fn envelopes_with_id_bits(
    channel: &str,
    start_ms: u64,
    count: usize,
    id_bits: u128,
) -> Vec<VerifiedEnvelope> {
    let relay = SecretKey::from_seed([1; 32]);
    let author = SecretKey::from_seed([2; 32]);
    let author_verifier = author.public_key().verifier().expect("valid key");
    let relay_verifier = relay.public_key().verifier().expect("valid key");
    let channel = ChannelName::new(channel).expect("valid channel name");
    let mut ids = MessageIdGenerator::default();
    (0..count)
        .map(|index| {
            let mut nonce = [0u8; 16];
            nonce[..8].copy_from_slice(&start_ms.to_be_bytes());
            nonce[8..].copy_from_slice(&(index as u64).to_be_bytes());
            let body = MessageBody::text(format!("message {index} at {start_ms}"));
            let draft = Draft::sign(
                &author,
                &relay.public_key(),
                channel.clone(),
                ClientNonce(nonce),
                body,
            );
            let id = ids
                .next(UnixMillis(start_ms + index as u64), id_bits + index as u128)
                .expect("ids available");
            draft
                .verify(&relay.public_key(), &author_verifier)
                .expect("honest draft")
                .seal(id, &relay)
                .verify(&relay_verifier)
                .expect("honest envelope")
        })
        .collect()
}

fn ids(envelopes: &[crate::message::Envelope]) -> Vec<MessageId> {
    envelopes.iter().map(|envelope| envelope.id).collect()
}

fn verified_ids(envelopes: &[VerifiedEnvelope]) -> Vec<MessageId> {
    envelopes
        .iter()
        .map(|verified| verified.envelope().id)
        .collect()
}

/// Runs every check against a fresh, empty store from `new_store`; panics on the first failure.
pub async fn run_all<Store, Make, Made>(new_store: Make)
where
    Store: HistoryStore,
    Make: Fn() -> Made,
    Made: std::future::Future<Output = Store>,
{
    stores_each_id_once(&new_store().await).await;
    pages_go_newest_first_and_respect_before(&new_store().await).await;
    ranges_go_oldest_first_within_bounds(&new_store().await).await;
    channels_are_kept_apart(&new_store().await).await;
    envelopes_come_back_unchanged(&new_store().await).await;
    ids_list_a_channel_and_get_fetches_by_id(&new_store().await).await;
}

async fn ids_list_a_channel_and_get_fetches_by_id(store: &impl HistoryStore) {
    let general = ChannelName::new("general").expect("valid");
    let random = ChannelName::new("random").expect("valid");
    let in_general = envelopes("general", 1_000, 6);
    let in_random = envelopes("random", 5_000, 2);
    store.insert(&in_random).await.expect("insert");
    store.insert(&in_general).await.expect("insert");
    let all = verified_ids(&in_general);
    assert_eq!(
        store.ids(&general).await.expect("ids"),
        all,
        "oldest first, one channel"
    );
    let other = verified_ids(&in_random)[0];
    let asked = [
        all[4],
        all[1],
        other,
        MessageId::first_at(UnixMillis(9_999)),
    ];
    let got = store.get(&general, &asked).await.expect("get");
    assert_eq!(
        ids(&got),
        vec![all[4], all[1]],
        "in the order asked, only what is held"
    );
    assert_eq!(got[0], *in_general[4].envelope());
    assert!(store.get(&general, &[]).await.expect("get").is_empty());
    assert!(store
        .ids(&ChannelName::new("empty").expect("valid"))
        .await
        .expect("ids")
        .is_empty());
    assert_eq!(
        store.ids(&random).await.expect("ids"),
        verified_ids(&in_random)
    );
}

async fn stores_each_id_once(store: &impl HistoryStore) {
    let general = ChannelName::new("general").expect("valid");
    let batch = envelopes("general", 1_000, 10);
    assert_eq!(store.insert(&batch).await.expect("insert"), 10);
    assert_eq!(
        store.insert(&batch[5..]).await.expect("insert again"),
        0,
        "duplicates are ignored"
    );
    let more = envelopes("general", 2_000, 3);
    let overlapping: Vec<VerifiedEnvelope> = batch[..2].iter().chain(&more).cloned().collect();
    assert_eq!(
        store
            .insert(&overlapping)
            .await
            .expect("insert overlapping"),
        3
    );
    assert_eq!(store.count(&general).await.expect("count"), 13);
    // Held ids far apart, with many others between them, and one new id.
    let run = envelopes("general", 3_000, 40);
    assert_eq!(store.insert(&run).await.expect("insert run"), 40);
    let scattered: Vec<VerifiedEnvelope> = [run[0].clone(), run[39].clone(), batch[3].clone()]
        .into_iter()
        .chain(envelopes("general", 4_000, 1))
        .collect();
    assert_eq!(store.insert(&scattered).await.expect("insert scattered"), 1);
    assert_eq!(store.count(&general).await.expect("count"), 54);
    assert_eq!(store.insert(&[]).await.expect("insert nothing"), 0);
    // Ids are unique per relay: an envelope claiming a stored id in another channel is ignored.
    let taken = batch[0].envelope().id;
    let random_bits = u128::from_be_bytes(taken.to_bytes()) & ((1 << 80) - 1);
    let impostor = envelopes_with_id_bits("random", 1_000, 1, random_bits);
    assert_eq!(impostor[0].envelope().id, taken);
    assert_eq!(store.insert(&impostor).await.expect("insert impostor"), 0);
    let random = ChannelName::new("random").expect("valid");
    assert_eq!(store.count(&random).await.expect("count"), 0);
}

async fn pages_go_newest_first_and_respect_before(store: &impl HistoryStore) {
    let general = ChannelName::new("general").expect("valid");
    let batch = envelopes("general", 1_000, 25);
    store.insert(&batch).await.expect("insert");
    let all = verified_ids(&batch);
    let newest = store.page_before(&general, None, 10).await.expect("page");
    assert_eq!(
        ids(&newest),
        all[15..].iter().rev().copied().collect::<Vec<_>>()
    );
    let older = store
        .page_before(&general, Some(all[15]), 10)
        .await
        .expect("page");
    assert_eq!(
        ids(&older),
        all[5..15].iter().rev().copied().collect::<Vec<_>>()
    );
    let oldest = store
        .page_before(&general, Some(all[5]), 10)
        .await
        .expect("page");
    assert_eq!(
        ids(&oldest),
        all[..5].iter().rev().copied().collect::<Vec<_>>()
    );
    assert!(store
        .page_before(&general, Some(all[0]), 10)
        .await
        .expect("page")
        .is_empty());
    assert!(store
        .page_before(&general, None, 0)
        .await
        .expect("page")
        .is_empty());
}

async fn ranges_go_oldest_first_within_bounds(store: &impl HistoryStore) {
    let general = ChannelName::new("general").expect("valid");
    let batch = envelopes("general", 1_000, 20);
    store.insert(&batch).await.expect("insert");
    let all = verified_ids(&batch);
    let middle = store
        .range(&general, all[3], all[12], 100)
        .await
        .expect("range");
    assert_eq!(
        ids(&middle),
        all[3..=12].to_vec(),
        "bounds are inclusive, oldest first"
    );
    let limited = store
        .range(&general, all[3], all[12], 4)
        .await
        .expect("range");
    assert_eq!(ids(&limited), all[3..7].to_vec());
    let by_time = store
        .range(
            &general,
            MessageId::first_at(UnixMillis(1_010)),
            MessageId::last_at(UnixMillis(1_014)),
            100,
        )
        .await
        .expect("range");
    assert_eq!(
        ids(&by_time),
        all[10..15].to_vec(),
        "time bounds select by the ids' timestamps"
    );
    assert!(store
        .range(&general, all[12], all[3], 100)
        .await
        .expect("range")
        .is_empty());
}

async fn channels_are_kept_apart(store: &impl HistoryStore) {
    let general = ChannelName::new("general").expect("valid");
    let random = ChannelName::new("random").expect("valid");
    let empty = ChannelName::new("empty").expect("valid");
    store
        .insert(&envelopes("general", 1_000, 5))
        .await
        .expect("insert");
    store
        .insert(&envelopes("random", 1_000, 7))
        .await
        .expect("insert");
    assert_eq!(store.count(&general).await.expect("count"), 5);
    assert_eq!(store.count(&random).await.expect("count"), 7);
    assert_eq!(store.count(&empty).await.expect("count"), 0);
    let page = store.page_before(&random, None, 100).await.expect("page");
    assert!(page.iter().all(|envelope| envelope.channel == random));
    assert_eq!(page.len(), 7);
    let everything = store
        .range(
            &general,
            MessageId::from_bytes([0; 16]),
            MessageId::from_bytes([0xff; 16]),
            100,
        )
        .await
        .expect("range");
    assert!(everything
        .iter()
        .all(|envelope| envelope.channel == general));
}

async fn envelopes_come_back_unchanged(store: &impl HistoryStore) {
    let general = ChannelName::new("general").expect("valid");
    let batch = envelopes("general", 5_000, 3);
    store.insert(&batch).await.expect("insert");
    let stored = store
        .range(
            &general,
            MessageId::from_bytes([0; 16]),
            MessageId::from_bytes([0xff; 16]),
            10,
        )
        .await
        .expect("range");
    let original: Vec<_> = batch
        .into_iter()
        .map(VerifiedEnvelope::into_envelope)
        .collect();
    assert_eq!(stored, original);
    let relay = SecretKey::from_seed([1; 32])
        .public_key()
        .verifier()
        .expect("valid key");
    assert!(
        stored
            .into_iter()
            .all(|envelope| envelope.verify(&relay).is_ok()),
        "signatures survive storage"
    );
}
