//! A virtual client's cache of recent history: every channel's envelopes of the last
//! [`CacheLimits::window`], at most [`CacheLimits::max_bytes`] in all, oldest evicted first.
//! It lives in memory; with a data directory every change is also written to a redb file,
//! which is read back at the next start (and verified again before anything is served).
//!
//! The age of a message is its id's time (the relay's stamp). Its size is its envelope's JSON
//! bytes, the form it travels in. Attachments have a budget of their own, evicted the same way
//! (`attachments.rs`).
//!
//! [`CacheStore`] puts a cache behind the members' [`HistoryStore`] interface, and so under the
//! conformance suite every store passes.

use peerchat_shared::channel::ChannelName;
use peerchat_shared::identity::Verifier;
use peerchat_shared::ids::MessageId;
use peerchat_shared::message::{Envelope, VerifiedEnvelope};
use peerchat_shared::store::{HistoryStore, StoreError};
use peerchat_shared::time::UnixMillis;
use redb::{Database, ReadableTable as _, TableDefinition};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Envelopes by (channel, id bytes), as JSON.
const ENVELOPES: TableDefinition<'_, (&str, u128), &[u8]> = TableDefinition::new("envelopes");
/// redb's page cache for the history file (redb's own default is 1 GiB, a ceiling that fills as
/// pages are touched: far beyond a 256 MB machine).
const PAGE_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// How much a cache keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Messages older than this are evicted.
    pub window: Duration,
    /// Envelope bytes kept in all; past it, the oldest go.
    pub max_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(6 * 3600),
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache file: {0}")]
    Disk(String),
}

fn disk_error(error: impl std::fmt::Display) -> CacheError {
    CacheError::Disk(error.to_string())
}

/// What eviction removed, per channel, for the sync engine to forget.
pub type Evicted = BTreeMap<ChannelName, Vec<MessageId>>;

/// See the module documentation.
pub struct HistoryCache {
    limits: CacheLimits,
    by_channel: BTreeMap<(ChannelName, MessageId), Envelope>,
    /// Every entry by age (an id's time comes first), with its channel and size. Ids are
    /// unique per relay: one entry per id, whatever the channel.
    by_age: BTreeMap<MessageId, (ChannelName, usize)>,
    bytes: usize,
    disk: Option<Database>,
    /// Envelopes read from disk, waiting for the relay's key to be verified with.
    unverified: Vec<Envelope>,
}

impl std::fmt::Debug for HistoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryCache")
            .field("messages", &self.by_age.len())
            .field("bytes", &self.bytes)
            .field("persistent", &self.disk.is_some())
            .finish()
    }
}

impl HistoryCache {
    pub fn in_memory(limits: CacheLimits) -> Self {
        Self {
            limits,
            by_channel: BTreeMap::new(),
            by_age: BTreeMap::new(),
            bytes: 0,
            disk: None,
            unverified: Vec::new(),
        }
    }

    /// A cache kept in the redb file at `path` (created when missing). What the file holds is
    /// kept aside until [`Self::admit_stored`] verifies it.
    pub fn open(path: &Path, limits: CacheLimits) -> Result<Self, CacheError> {
        let database = redb::Builder::new()
            .set_cache_size(PAGE_CACHE_BYTES)
            .create(path)
            .map_err(disk_error)?;
        let mut unverified = Vec::new();
        let mut unreadable = 0usize;
        {
            let write = database.begin_write().map_err(disk_error)?;
            write.open_table(ENVELOPES).map_err(disk_error)?;
            write.commit().map_err(disk_error)?;
            let read = database.begin_read().map_err(disk_error)?;
            let table = read.open_table(ENVELOPES).map_err(disk_error)?;
            for entry in table.iter().map_err(disk_error)? {
                let (_, value) = entry.map_err(disk_error)?;
                match serde_json::from_slice::<Envelope>(value.value()) {
                    Ok(envelope) => unverified.push(envelope),
                    Err(_) => unreadable += 1,
                }
            }
        }
        if unreadable > 0 {
            tracing::warn!(
                "{unreadable} unreadable entries in {} ignored",
                path.display()
            );
        }
        let mut cache = Self::in_memory(limits);
        cache.disk = Some(database);
        cache.unverified = unverified;
        Ok(cache)
    }

    /// Verifies what was read from disk against the relay's key and takes in what checks out
    /// (the rest is deleted). Returns what eviction removed.
    pub fn admit_stored(
        &mut self,
        relay: &Verifier,
        now: UnixMillis,
    ) -> Result<Evicted, CacheError> {
        let unverified = std::mem::take(&mut self.unverified);
        let mut verified = Vec::with_capacity(unverified.len());
        let mut rejected = Vec::new();
        for envelope in unverified {
            let key = (envelope.channel.clone(), envelope.id);
            match envelope.verify(relay) {
                Ok(envelope) => verified.push(envelope),
                Err(_) => rejected.push(key),
            }
        }
        if !rejected.is_empty() {
            tracing::warn!("{} stored envelopes failed verification", rejected.len());
            self.delete_from_disk(&rejected)?;
        }
        for envelope in &verified {
            self.remember(envelope.envelope().clone());
        }
        self.evict(now)
    }

    /// Stores the envelopes not held yet (too old ones are not kept); returns how many were
    /// new, and what was evicted to make room.
    pub fn insert(
        &mut self,
        envelopes: &[VerifiedEnvelope],
        now: UnixMillis,
    ) -> Result<(usize, Evicted), CacheError> {
        let oldest_kept = self.oldest_kept(now);
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<&Envelope> = envelopes
            .iter()
            .map(VerifiedEnvelope::envelope)
            .filter(|envelope| envelope.id.timestamp() >= oldest_kept)
            .filter(|envelope| !self.by_age.contains_key(&envelope.id) && seen.insert(envelope.id))
            .collect();
        if let Some(database) = &self.disk {
            let write = begin_cache_write(database)?;
            {
                let mut table = write.open_table(ENVELOPES).map_err(disk_error)?;
                for envelope in &fresh {
                    let json = serde_json::to_vec(envelope).map_err(disk_error)?;
                    table
                        .insert(disk_key(&envelope.channel, envelope.id), json.as_slice())
                        .map_err(disk_error)?;
                }
            }
            write.commit().map_err(disk_error)?;
        }
        let new = fresh.len();
        for envelope in fresh {
            self.remember(envelope.clone());
        }
        Ok((new, self.evict(now)?))
    }

    /// Evicts what is older than the window, then the oldest until the size bound holds.
    pub fn evict(&mut self, now: UnixMillis) -> Result<Evicted, CacheError> {
        let oldest_kept = self.oldest_kept(now);
        let mut evicted: Vec<(ChannelName, MessageId)> = Vec::new();
        while let Some((id, (channel, size))) = self.by_age.first_key_value() {
            if id.timestamp() >= oldest_kept && self.bytes <= self.limits.max_bytes {
                break;
            }
            let (id, channel, size) = (*id, channel.clone(), *size);
            self.by_age.pop_first();
            self.by_channel.remove(&(channel.clone(), id));
            self.bytes -= size;
            evicted.push((channel, id));
        }
        if evicted.is_empty() {
            return Ok(Evicted::new());
        }
        self.delete_from_disk(&evicted)?;
        let mut by_channel = Evicted::new();
        for (channel, id) in evicted {
            by_channel.entry(channel).or_default().push(id);
        }
        Ok(by_channel)
    }

    pub fn len(&self) -> usize {
        self.by_age.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_age.is_empty()
    }

    /// Envelope bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every id of `channel`, oldest first.
    pub fn ids(&self, channel: &ChannelName) -> Vec<MessageId> {
        self.whole_channel(channel)
            .map(|((_, id), _)| *id)
            .collect()
    }

    /// The envelopes of `channel` among `ids`, in the order asked; ids not held are left out.
    pub fn get(&self, channel: &ChannelName, ids: &[MessageId]) -> Vec<Envelope> {
        ids.iter()
            .filter_map(|id| self.by_channel.get(&(channel.clone(), *id)).cloned())
            .collect()
    }

    /// Up to `limit` envelopes of `channel` with ids below `before` (all when `None`), newest
    /// first.
    pub fn page_before(
        &self,
        channel: &ChannelName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Vec<Envelope> {
        let first = (channel.clone(), MessageId::from_bytes([0; 16]));
        let end = match before {
            Some(before) => Bound::Excluded((channel.clone(), before)),
            None => Bound::Included((channel.clone(), MessageId::from_bytes([0xff; 16]))),
        };
        self.by_channel
            .range((Bound::Included(first), end))
            .rev()
            .take(limit)
            .map(|(_, envelope)| envelope.clone())
            .collect()
    }

    /// Up to `limit` envelopes of `channel` with ids in `first..=last`, oldest first.
    pub fn range(
        &self,
        channel: &ChannelName,
        first: MessageId,
        last: MessageId,
        limit: usize,
    ) -> Vec<Envelope> {
        if first > last {
            return Vec::new();
        }
        self.by_channel
            .range((channel.clone(), first)..=(channel.clone(), last))
            .take(limit)
            .map(|(_, envelope)| envelope.clone())
            .collect()
    }

    /// How many envelopes of `channel` are held.
    pub fn count(&self, channel: &ChannelName) -> usize {
        self.whole_channel(channel).count()
    }

    fn whole_channel<'a>(
        &'a self,
        channel: &ChannelName,
    ) -> impl Iterator<Item = (&'a (ChannelName, MessageId), &'a Envelope)> + 'a {
        self.by_channel.range(
            (channel.clone(), MessageId::from_bytes([0; 16]))
                ..=(channel.clone(), MessageId::from_bytes([0xff; 16])),
        )
    }

    /// Messages stamped before this are outside the window.
    pub fn oldest_kept(&self, now: UnixMillis) -> UnixMillis {
        let window = u64::try_from(self.limits.window.as_millis()).unwrap_or(u64::MAX);
        UnixMillis(now.0.saturating_sub(window))
    }

    fn remember(&mut self, envelope: Envelope) {
        if self.by_age.contains_key(&envelope.id) {
            return;
        }
        let size = serde_json::to_vec(&envelope).map_or(0, |json| json.len());
        let key = (envelope.channel.clone(), envelope.id);
        self.by_age
            .insert(envelope.id, (envelope.channel.clone(), size));
        self.by_channel.insert(key, envelope);
        self.bytes += size;
    }

    fn delete_from_disk(&self, entries: &[(ChannelName, MessageId)]) -> Result<(), CacheError> {
        let Some(database) = &self.disk else {
            return Ok(());
        };
        let write = begin_cache_write(database)?;
        {
            let mut table = write.open_table(ENVELOPES).map_err(disk_error)?;
            for (channel, id) in entries {
                table.remove(disk_key(channel, *id)).map_err(disk_error)?;
            }
        }
        write.commit().map_err(disk_error)
    }
}

/// A [`HistoryCache`] as a [`HistoryStore`], its window measured from `clock`. What the trait's
/// `insert` evicts is not reported (the driver, which must tell its sync engine, uses
/// [`HistoryCache::insert`]).
#[derive(Debug)]
pub struct CacheStore {
    cache: Mutex<HistoryCache>,
    clock: fn() -> UnixMillis,
}

impl CacheStore {
    pub fn new(cache: HistoryCache, clock: fn() -> UnixMillis) -> Self {
        Self {
            cache: Mutex::new(cache),
            clock,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HistoryCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl HistoryStore for CacheStore {
    async fn insert(&self, envelopes: &[VerifiedEnvelope]) -> Result<usize, StoreError> {
        let (new, _) = self
            .cache()
            .insert(envelopes, (self.clock)())
            .map_err(|error| StoreError(error.to_string()))?;
        Ok(new)
    }

    async fn page_before(
        &self,
        channel: &ChannelName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError> {
        Ok(self.cache().page_before(channel, before, limit))
    }

    async fn range(
        &self,
        channel: &ChannelName,
        first: MessageId,
        last: MessageId,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError> {
        Ok(self.cache().range(channel, first, last, limit))
    }

    async fn count(&self, channel: &ChannelName) -> Result<usize, StoreError> {
        Ok(self.cache().count(channel))
    }

    async fn ids(&self, channel: &ChannelName) -> Result<Vec<MessageId>, StoreError> {
        Ok(self.cache().ids(channel))
    }

    async fn get(
        &self,
        channel: &ChannelName,
        ids: &[MessageId],
    ) -> Result<Vec<Envelope>, StoreError> {
        Ok(self.cache().get(channel, ids))
    }
}

/// A write that is not synced to disk at once: a cache may lose its last writes in a power
/// cut (peers still hold them), never its consistency, and live traffic costs no fsync each.
fn begin_cache_write(database: &Database) -> Result<redb::WriteTransaction, CacheError> {
    let mut write = database.begin_write().map_err(disk_error)?;
    write.set_durability(redb::Durability::Eventual);
    Ok(write)
}

fn disk_key(channel: &ChannelName, id: MessageId) -> (&str, u128) {
    (channel.as_str(), u128::from_be_bytes(id.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerchat_shared::identity::SecretKey;
    use peerchat_shared::ids::MessageIdGenerator;
    use peerchat_shared::message::{ClientNonce, Draft, MessageBody};

    const START: UnixMillis = UnixMillis(1_800_000_000_000);
    const MINUTE: u64 = 60_000;

    fn relay() -> SecretKey {
        SecretKey::from_seed([1; 32])
    }

    fn general() -> ChannelName {
        ChannelName::new("general").unwrap()
    }

    /// `count` verified envelopes in #general, one a minute from [`START`].
    fn history(count: usize) -> Vec<VerifiedEnvelope> {
        let relay = relay();
        let author = SecretKey::from_seed([7; 32]);
        let mut ids = MessageIdGenerator::default();
        (0..count)
            .map(|n| {
                let draft = Draft::sign(
                    &author,
                    &relay.public_key(),
                    general(),
                    ClientNonce((n as u128).to_be_bytes()),
                    MessageBody::text(format!("message {n}")),
                );
                let verified = draft
                    .verify(
                        &relay.public_key(),
                        &author.public_key().verifier().unwrap(),
                    )
                    .unwrap();
                let time = START.saturating_add_millis(n as u64 * MINUTE);
                let envelope = verified.seal(ids.next(time, n as u128).unwrap(), &relay);
                envelope
                    .verify(&relay.public_key().verifier().unwrap())
                    .unwrap()
            })
            .collect()
    }

    fn limits(window_minutes: u64, max_bytes: usize) -> CacheLimits {
        CacheLimits {
            window: Duration::from_secs(window_minutes * 60),
            max_bytes,
        }
    }

    fn at_minute(minute: u64) -> UnixMillis {
        START.saturating_add_millis(minute * MINUTE)
    }

    #[test]
    fn messages_older_than_the_window_are_evicted_and_reported() {
        let envelopes = history(10);
        let mut cache = HistoryCache::in_memory(limits(5, usize::MAX));
        let (new, evicted) = cache.insert(&envelopes, at_minute(9)).unwrap();
        assert_eq!(new, 6, "minutes 0 to 3 are outside the window on arrival");
        assert!(evicted.is_empty());

        let evicted = cache.evict(at_minute(12)).unwrap();
        let gone: Vec<MessageId> = envelopes[4..7].iter().map(|e| e.envelope().id).collect();
        assert_eq!(evicted, Evicted::from([(general(), gone)]));
        assert_eq!(cache.ids(&general()).len(), 3);
        assert!(cache
            .ids(&general())
            .iter()
            .all(|id| id.timestamp() >= at_minute(7)));
    }

    #[test]
    fn the_size_bound_holds_by_evicting_the_oldest() {
        let envelopes = history(50);
        let one = serde_json::to_vec(envelopes[0].envelope()).unwrap().len();
        let mut cache = HistoryCache::in_memory(limits(1_000, 10 * one + one / 2));
        for chunk in envelopes.chunks(7) {
            cache.insert(chunk, at_minute(50)).unwrap();
            assert!(cache.bytes() <= 10 * one + one / 2);
        }
        let kept = cache.ids(&general());
        let newest: Vec<MessageId> = envelopes[envelopes.len() - kept.len()..]
            .iter()
            .map(|e| e.envelope().id)
            .collect();
        assert_eq!(kept, newest, "the newest are kept");
        assert!(kept.len() >= 9);
    }

    #[test]
    fn a_cache_file_brings_back_what_was_kept_and_drops_what_was_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        let envelopes = history(10);
        {
            let mut cache = HistoryCache::open(&path, limits(5, usize::MAX)).unwrap();
            cache.insert(&envelopes, at_minute(9)).unwrap();
            cache.evict(at_minute(11)).unwrap();
        }
        let mut reopened = HistoryCache::open(&path, limits(5, usize::MAX)).unwrap();
        assert!(
            reopened.is_empty(),
            "nothing is served before it is verified"
        );
        let verifier = relay().public_key().verifier().unwrap();
        reopened.admit_stored(&verifier, at_minute(11)).unwrap();
        let expected: Vec<MessageId> = envelopes[6..].iter().map(|e| e.envelope().id).collect();
        assert_eq!(reopened.ids(&general()), expected);
        assert_eq!(
            reopened.get(&general(), &expected[..1]),
            vec![envelopes[6].envelope().clone()]
        );
    }

    #[test]
    fn records_that_do_not_verify_are_deleted_from_the_cache_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        let envelopes = history(3);
        {
            let mut cache = HistoryCache::open(&path, limits(60, usize::MAX)).unwrap();
            cache.insert(&envelopes, at_minute(3)).unwrap();
            // Someone alters a record on disk.
            let database = cache.disk.as_ref().unwrap();
            let mut forged = envelopes[1].envelope().clone();
            forged.body = MessageBody::text("forged");
            let write = database.begin_write().unwrap();
            {
                let mut table = write.open_table(ENVELOPES).unwrap();
                let json = serde_json::to_vec(&forged).unwrap();
                table
                    .insert(disk_key(&forged.channel, forged.id), json.as_slice())
                    .unwrap();
            }
            write.commit().unwrap();
        }
        let verifier = relay().public_key().verifier().unwrap();
        let mut reopened = HistoryCache::open(&path, limits(60, usize::MAX)).unwrap();
        reopened.admit_stored(&verifier, at_minute(3)).unwrap();
        assert_eq!(reopened.len(), 2);
        drop(reopened);
        let again = HistoryCache::open(&path, limits(60, usize::MAX)).unwrap();
        assert_eq!(
            again.unverified.len(),
            2,
            "the forged record is gone from disk"
        );
    }
}
