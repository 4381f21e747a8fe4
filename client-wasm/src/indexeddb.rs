//! History in the browser's IndexedDB (through rexie): one database per relay, one object store
//! of envelopes keyed by the relay's ULID, and an index over (channel, id) for pages and ranges.
//! The same database keeps the member's other per-relay records (see `relay_records`).

use futures_util::future::try_join_all;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::ids::MessageId;
use peerchat_shared::message::{Envelope, VerifiedEnvelope};
use peerchat_shared::store::{HistoryStore, StoreError};
use rexie::{Direction, Index, KeyRange, ObjectStore, Rexie, TransactionMode};
use std::collections::HashSet;
use wasm_bindgen::JsValue;

/// Version 1: the `envelopes` store (key path `id`) with the `by_channel` index on
/// `[channel, id]`. Version 2 adds `outbox`, `meta` and `profiles` (see `relay_records`), version
/// 3 `attachments` and `chunks` (see `attachment_store`); an upgrade creates them and keeps the
/// rest. A later schema raises this and lists its stores
/// in [`IndexedDbStore::open`]: IndexedDB creates the missing ones and keeps the rest.
pub const SCHEMA_VERSION: u32 = 3;
const ENVELOPES: &str = "envelopes";
const BY_CHANNEL: &str = "by_channel";
/// Sorts after every ULID text (they use `0-9A-Z` only).
const AFTER_EVERY_ID: &str = "\u{ffff}";

/// A [`HistoryStore`] in IndexedDB.
#[derive(Debug)]
pub struct IndexedDbStore {
    pub(crate) database: Rexie,
}

pub(crate) fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

fn channel_key(channel: &ChannelName, id: &str) -> JsValue {
    js_sys::Array::of2(&JsValue::from_str(channel.as_str()), &JsValue::from_str(id)).into()
}

fn to_record(envelope: &Envelope) -> Result<JsValue, StoreError> {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    serde::Serialize::serialize(envelope, &serializer).map_err(failed)
}

fn from_records(records: Vec<(JsValue, JsValue)>) -> Result<Vec<Envelope>, StoreError> {
    records
        .into_iter()
        .map(|(_, record)| serde_wasm_bindgen::from_value(record).map_err(failed))
        .collect()
}

/// Every id of `channel` in the `by_channel` index.
fn whole_channel(channel: &ChannelName) -> Result<KeyRange, StoreError> {
    KeyRange::bound(
        &channel_key(channel, ""),
        &channel_key(channel, AFTER_EVERY_ID),
        Some(false),
        Some(false),
    )
    .map_err(failed)
}

/// Keys read at most, per envelope of a batch, when looking for the ones already held.
const HELD_SCAN_PER_ENVELOPE: usize = 4;

/// Which of `envelopes` (distinct ids) `store` holds already. One `getAllKeys` over the batch's
/// id range answers it when few other ids lie in that range (history arrives in runs of
/// neighbouring ids); otherwise one look per id, all sent at once.
async fn held_ids(
    store: &rexie::Store,
    envelopes: &[&Envelope],
) -> Result<HashSet<MessageId>, StoreError> {
    let ids = || envelopes.iter().map(|envelope| envelope.id);
    let (Some(first), Some(last)) = (ids().min(), ids().max()) else {
        return Ok(HashSet::new());
    };
    let range = KeyRange::bound(
        &JsValue::from_str(&first.to_string()),
        &JsValue::from_str(&last.to_string()),
        Some(false),
        Some(false),
    )
    .map_err(failed)?;
    let limit = envelopes.len() * HELD_SCAN_PER_ENVELOPE;
    let keys = store
        .get_all_keys(Some(range), u32::try_from(limit).ok())
        .await
        .map_err(failed)?;
    if keys.len() < limit {
        let held: HashSet<String> = keys.iter().filter_map(JsValue::as_string).collect();
        return Ok(ids().filter(|id| held.contains(&id.to_string())).collect());
    }
    let held = try_join_all(ids().map(|id| store.key_exists(JsValue::from_str(&id.to_string()))))
        .await
        .map_err(failed)?;
    Ok(ids()
        .zip(held)
        .filter(|(_, held)| *held)
        .map(|(id, _)| id)
        .collect())
}

impl IndexedDbStore {
    /// Opens (creating or upgrading) the database `name`, e.g. `peerchat-<relay key>`.
    pub async fn open(name: &str) -> Result<Self, StoreError> {
        let envelopes = ObjectStore::new(ENVELOPES)
            .key_path("id")
            .add_index(Index::new_array(BY_CHANNEL, ["channel", "id"]));
        let database = Rexie::builder(name)
            .version(SCHEMA_VERSION)
            .add_object_store(envelopes)
            .add_object_store(ObjectStore::new(crate::relay_records::OUTBOX))
            .add_object_store(ObjectStore::new(crate::relay_records::META))
            .add_object_store(ObjectStore::new(crate::relay_records::PROFILES))
            .add_object_store(ObjectStore::new(crate::attachment_store::ATTACHMENTS))
            .add_object_store(ObjectStore::new(crate::attachment_store::CHUNKS))
            .build()
            .await
            .map_err(failed)?;
        Ok(Self { database })
    }

    /// Deletes the database `name` and everything in it.
    pub async fn delete(name: &str) -> Result<(), StoreError> {
        Rexie::delete(name).await.map_err(failed)
    }

    /// Closes the connection (so the database can be reopened or deleted).
    pub fn close(self) {
        self.database.close();
    }

    /// A read-only transaction and the `by_channel` index in it. The transaction is returned
    /// so that it lives as long as the index is used.
    fn read_channel_index(&self) -> Result<(rexie::Transaction, rexie::StoreIndex), StoreError> {
        let transaction = self
            .database
            .transaction(&[ENVELOPES], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let index = transaction
            .store(ENVELOPES)
            .and_then(|store| store.index(BY_CHANNEL))
            .map_err(failed)?;
        Ok((transaction, index))
    }

    /// Up to `limit` envelopes with (channel, id) keys from `lower` (inclusive) to `upper`
    /// (inclusive or not), oldest first, in one `getAll` request.
    async fn get_range(
        &self,
        lower: &JsValue,
        upper: &JsValue,
        upper_open: bool,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let range = KeyRange::bound(lower, upper, Some(false), Some(upper_open)).map_err(failed)?;
        let (_transaction, index) = self.read_channel_index()?;
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let records = index
            .get_all(Some(range), Some(limit))
            .await
            .map_err(failed)?;
        records
            .into_iter()
            .map(|record| serde_wasm_bindgen::from_value(record).map_err(failed))
            .collect()
    }

    /// The id of the `position`-th envelope counting down from the top of `range` (0 is the
    /// newest), found with one cursor jump instead of reading every record on the way.
    async fn id_from_top(
        &self,
        range: KeyRange,
        position: usize,
    ) -> Result<Option<MessageId>, StoreError> {
        let (_transaction, index) = self.read_channel_index()?;
        let offset = u32::try_from(position).unwrap_or(u32::MAX);
        let records = index
            .scan(
                Some(range),
                Some(1),
                Some(offset).filter(|&o| o > 0),
                Some(Direction::Prev),
            )
            .await
            .map_err(failed)?;
        Ok(from_records(records)?.first().map(|envelope| envelope.id))
    }
}

impl HistoryStore for IndexedDbStore {
    async fn insert(&self, envelopes: &[VerifiedEnvelope]) -> Result<usize, StoreError> {
        if envelopes.is_empty() {
            return Ok(0);
        }
        let transaction = self
            .database
            .transaction(&[ENVELOPES], TransactionMode::ReadWrite)
            .map_err(failed)?;
        let store = transaction.store(ENVELOPES).map_err(failed)?;
        let mut ids = HashSet::new();
        let unique: Vec<&Envelope> = envelopes
            .iter()
            .map(VerifiedEnvelope::envelope)
            .filter(|envelope| ids.insert(envelope.id))
            .collect();
        // The first envelope stored under an id stays (`add` of an existing key would fail its
        // request and abort the whole transaction, hence the look first).
        let held = held_ids(&store, &unique).await?;
        let records = unique
            .iter()
            .filter(|envelope| !held.contains(&envelope.id))
            .map(|envelope| Ok((to_record(envelope)?, None)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let new = records.len();
        // The puts go out at once, answered in order: one wait for the whole batch.
        store.put_all(records.into_iter()).await.map_err(failed)?;
        transaction.done().await.map_err(failed)?;
        Ok(new)
    }

    async fn page_before(
        &self,
        channel: &ChannelName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A reverse cursor would cost one request per envelope; instead, jump to the oldest
        // envelope of the page and fetch the page with one `getAll`.
        let (upper, upper_open) = match before {
            Some(before) => (channel_key(channel, &before.to_string()), true),
            None => (channel_key(channel, AFTER_EVERY_ID), false),
        };
        let lower = channel_key(channel, "");
        let range =
            KeyRange::bound(&lower, &upper, Some(false), Some(upper_open)).map_err(failed)?;
        let lower = match self.id_from_top(range, limit - 1).await? {
            Some(oldest) => channel_key(channel, &oldest.to_string()),
            None => lower,
        };
        let mut page = self.get_range(&lower, &upper, upper_open, limit).await?;
        page.reverse();
        Ok(page)
    }

    async fn range(
        &self,
        channel: &ChannelName,
        first: MessageId,
        last: MessageId,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError> {
        if first > last {
            return Ok(Vec::new());
        }
        let lower = channel_key(channel, &first.to_string());
        let upper = channel_key(channel, &last.to_string());
        self.get_range(&lower, &upper, false, limit).await
    }

    async fn ids(&self, channel: &ChannelName) -> Result<Vec<MessageId>, StoreError> {
        let range = whole_channel(channel)?;
        let (_transaction, index) = self.read_channel_index()?;
        let keys = index
            .get_all_keys(Some(range), None)
            .await
            .map_err(failed)?;
        keys.into_iter()
            .map(|key| {
                key.as_string()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| StoreError("a stored id is not a message id".into()))
            })
            .collect()
    }

    async fn get(
        &self,
        channel: &ChannelName,
        ids: &[MessageId],
    ) -> Result<Vec<Envelope>, StoreError> {
        let transaction = self
            .database
            .transaction(&[ENVELOPES], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let store = transaction.store(ENVELOPES).map_err(failed)?;
        // All requests at once, as in `insert`.
        let records = try_join_all(
            ids.iter()
                .map(|id| store.get(JsValue::from_str(&id.to_string()))),
        )
        .await
        .map_err(failed)?;
        let mut found = Vec::with_capacity(ids.len());
        for record in records.into_iter().flatten() {
            let envelope: Envelope = serde_wasm_bindgen::from_value(record).map_err(failed)?;
            if envelope.channel == *channel {
                found.push(envelope);
            }
        }
        Ok(found)
    }

    async fn count(&self, channel: &ChannelName) -> Result<usize, StoreError> {
        let range = whole_channel(channel)?;
        let (_transaction, index) = self.read_channel_index()?;
        let count = index.count(Some(range)).await.map_err(failed)?;
        Ok(count as usize)
    }
}
