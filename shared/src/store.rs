//! Where a client keeps history: the [`HistoryStore`] trait every store implements (IndexedDB in
//! the browser, memory or disk in virtual clients), and [`MemoryStore`].
//!
//! Stores accept only [`VerifiedEnvelope`]s, key them by the relay's id (unique per relay), and
//! ignore an id they already hold, so storing the same history twice (from two peers, say)
//! changes nothing.
//! `conformance` (feature `store-conformance`) is the test suite every store must pass.

use crate::channel::ChannelName;
use crate::ids::MessageId;
use crate::message::{Envelope, VerifiedEnvelope};
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

#[cfg(feature = "store-conformance")]
pub mod conformance;

/// The storage backend failed; nothing about the data is implied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history store failed: {0}")]
pub struct StoreError(pub String);

/// A channel's history, keyed by message id. Methods take `&self`: stores use interior
/// mutability, as IndexedDB does.
// Implementations run on one thread (the browser) or inside one task; callers never need the
// futures to be `Send`, so plain `async fn` is the honest signature.
#[allow(async_fn_in_trait)]
pub trait HistoryStore {
    /// Stores the envelopes it does not hold yet; returns how many were new.
    async fn insert(&self, envelopes: &[VerifiedEnvelope]) -> Result<usize, StoreError>;

    /// Up to `limit` envelopes of `channel` with ids below `before` (all ids when `None`),
    /// newest first: the page a reader sees when scrolling up.
    async fn page_before(
        &self,
        channel: &ChannelName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError>;

    /// Up to `limit` envelopes of `channel` with ids in `first..=last`, oldest first: what sync
    /// sends a peer for a range.
    async fn range(
        &self,
        channel: &ChannelName,
        first: MessageId,
        last: MessageId,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError>;

    /// How many envelopes of `channel` the store holds.
    async fn count(&self, channel: &ChannelName) -> Result<usize, StoreError>;

    /// Every id of `channel`, oldest first: what sync reconciles.
    async fn ids(&self, channel: &ChannelName) -> Result<Vec<MessageId>, StoreError>;

    /// The envelopes of `channel` among `ids`, in the order asked; ids not held (or held in
    /// another channel) are left out. What a peer's `want` is answered with.
    async fn get(
        &self,
        channel: &ChannelName,
        ids: &[MessageId],
    ) -> Result<Vec<Envelope>, StoreError>;
}

/// History in memory, for tests and for virtual clients without a data directory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    history: Mutex<MemoryHistory>,
}

#[derive(Debug, Default)]
struct MemoryHistory {
    by_channel: BTreeMap<(ChannelName, MessageId), Envelope>,
    ids: HashSet<MessageId>,
}

impl MemoryStore {
    fn history(&self) -> std::sync::MutexGuard<'_, MemoryHistory> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Every id of `channel`, as a range of the (channel, id) map.
fn whole_channel(channel: &ChannelName) -> std::ops::RangeInclusive<(ChannelName, MessageId)> {
    (channel.clone(), MessageId::from_bytes([0; 16]))
        ..=(channel.clone(), MessageId::from_bytes([0xff; 16]))
}

impl HistoryStore for MemoryStore {
    async fn insert(&self, envelopes: &[VerifiedEnvelope]) -> Result<usize, StoreError> {
        let mut history = self.history();
        let mut new = 0;
        for verified in envelopes {
            let envelope = verified.envelope();
            if history.ids.insert(envelope.id) {
                history
                    .by_channel
                    .insert((envelope.channel.clone(), envelope.id), envelope.clone());
                new += 1;
            }
        }
        Ok(new)
    }

    async fn page_before(
        &self,
        channel: &ChannelName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError> {
        let history = self.history();
        let whole = whole_channel(channel);
        let page: Vec<Envelope> = match before {
            Some(before) => history
                .by_channel
                .range(whole.start().clone()..(channel.clone(), before))
                .rev()
                .take(limit)
                .map(|(_, envelope)| envelope.clone())
                .collect(),
            None => history
                .by_channel
                .range(whole)
                .rev()
                .take(limit)
                .map(|(_, envelope)| envelope.clone())
                .collect(),
        };
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
        let history = self.history();
        let range = history
            .by_channel
            .range((channel.clone(), first)..=(channel.clone(), last));
        Ok(range
            .take(limit)
            .map(|(_, envelope)| envelope.clone())
            .collect())
    }

    async fn count(&self, channel: &ChannelName) -> Result<usize, StoreError> {
        Ok(self
            .history()
            .by_channel
            .range(whole_channel(channel))
            .count())
    }

    async fn ids(&self, channel: &ChannelName) -> Result<Vec<MessageId>, StoreError> {
        Ok(self
            .history()
            .by_channel
            .range(whole_channel(channel))
            .map(|((_, id), _)| *id)
            .collect())
    }

    async fn get(
        &self,
        channel: &ChannelName,
        ids: &[MessageId],
    ) -> Result<Vec<Envelope>, StoreError> {
        let history = self.history();
        Ok(ids
            .iter()
            .filter_map(|id| history.by_channel.get(&(channel.clone(), *id)).cloned())
            .collect())
    }
}
