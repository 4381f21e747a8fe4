//! Room for a member's attachments within a byte limit, sans-IO: the driver's ledger of what
//! each attachment takes and which go first when room is needed.
//!
//! - An attachment takes the bytes of the chunks stored, never the size its description
//!   claims, and room is taken chunk by chunk as verified chunks arrive: a made-up description
//!   nobody can serve costs nobody anything.
//! - Room is made by dropping the attachments ranked lowest first (the driver chooses the rank:
//!   the browser drops unfinished fetches nobody follows, then others' files least recently
//!   opened first, then the member's own); a pinned attachment (being fetched or uploaded) is
//!   never dropped.
//! - Nothing is dropped for room that cannot be made even then.

use super::AttachmentKey;
use std::collections::{BTreeMap, BTreeSet};

/// See the module documentation.
#[derive(Debug)]
pub struct Room<R> {
    limit: u64,
    used: u64,
    entries: BTreeMap<AttachmentKey, Entry<R>>,
    /// Unpinned attachments, the first to drop first.
    droppable: BTreeSet<(R, AttachmentKey)>,
}

#[derive(Debug)]
struct Entry<R> {
    rank: R,
    bytes: u64,
    pinned: bool,
}

/// Room that cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{needed} bytes are needed and at most {free} can be freed within the storage limit")]
pub struct RoomFull {
    pub needed: u64,
    pub free: u64,
}

impl<R: Ord + Copy> Room<R> {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            entries: BTreeMap::new(),
            droppable: BTreeSet::new(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes taken by every attachment together.
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn contains(&self, key: &AttachmentKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Counts an attachment already stored (as the driver finds its store), or ranks one known
    /// anew; its bytes add to what it had.
    pub fn insert(&mut self, key: AttachmentKey, rank: R, bytes: u64) {
        let pinned = self.entries.get(&key).is_some_and(|entry| entry.pinned);
        let had = self.remove(&key);
        let entry = Entry {
            rank,
            bytes: had + bytes,
            pinned,
        };
        self.used += entry.bytes;
        if !pinned {
            self.droppable.insert((rank, key));
        }
        self.entries.insert(key, entry);
    }

    /// Ranks `key` anew (it was opened, say); nothing when it is not here.
    pub fn rank(&mut self, key: &AttachmentKey, rank: R) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if !entry.pinned {
            self.droppable.remove(&(entry.rank, *key));
            self.droppable.insert((rank, *key));
        }
        entry.rank = rank;
    }

    /// Keeps `key` from being dropped (added with nothing taken when not here), as `rank`.
    pub fn pin(&mut self, key: AttachmentKey, rank: R) {
        if !self.contains(&key) {
            self.insert(key, rank, 0);
        }
        self.rank(&key, rank);
        if let Some(entry) = self.entries.get_mut(&key) {
            self.droppable.remove(&(entry.rank, key));
            entry.pinned = true;
        }
    }

    /// Lets `key` be dropped again, as `rank`.
    pub fn unpin(&mut self, key: &AttachmentKey, rank: R) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.pinned = false;
            entry.rank = rank;
            self.droppable.insert((rank, *key));
        }
    }

    /// Forgets `key`; returns the bytes it took.
    pub fn remove(&mut self, key: &AttachmentKey) -> u64 {
        let Some(entry) = self.entries.remove(key) else {
            return 0;
        };
        self.droppable.remove(&(entry.rank, *key));
        self.used -= entry.bytes;
        entry.bytes
    }

    /// Whether an attachment of `size` bytes could fit whole, dropping everything unpinned.
    pub fn could_fit(&self, key: &AttachmentKey, size: u64) -> bool {
        let pinned_elsewhere: u64 = self
            .entries
            .iter()
            .filter(|(other, entry)| entry.pinned && *other != key)
            .map(|(_, entry)| entry.bytes)
            .sum();
        pinned_elsewhere.saturating_add(size) <= self.limit
    }

    /// Takes `bytes` more for `key` (pinned while its chunks come, so it is here), dropping the
    /// lowest-ranked unpinned others while the limit would be passed; returns those dropped, for
    /// the driver to delete. When room cannot be made, or `key` is not here, nothing is dropped
    /// or taken.
    pub fn take(&mut self, key: AttachmentKey, bytes: u64) -> Result<Vec<AttachmentKey>, RoomFull> {
        if !self.contains(&key) {
            return Err(RoomFull {
                needed: bytes,
                free: 0,
            });
        }
        let mut freeable = 0;
        let mut dropping = Vec::new();
        for (_, other) in &self.droppable {
            if self.used + bytes <= self.limit.saturating_add(freeable) {
                break;
            }
            if *other != key {
                freeable += self.entries.get(other).map_or(0, |entry| entry.bytes);
                dropping.push(*other);
            }
        }
        if self.used + bytes > self.limit.saturating_add(freeable) {
            return Err(RoomFull {
                needed: bytes,
                free: (self.limit + freeable).saturating_sub(self.used),
            });
        }
        for other in &dropping {
            self.remove(other);
        }
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.bytes += bytes;
            self.used += bytes;
        }
        Ok(dropping)
    }

    /// Sets the limit, dropping the lowest-ranked unpinned attachments until what is taken fits
    /// (or only pinned ones are left); returns those dropped.
    pub fn set_limit(&mut self, limit: u64) -> Vec<AttachmentKey> {
        self.limit = limit;
        let mut dropped = Vec::new();
        while self.used > self.limit {
            let Some((_, key)) = self.droppable.first().copied() else {
                break;
            };
            self.remove(&key);
            dropped.push(key);
        }
        dropped
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed expectation is a failed test"
)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn key(n: u8) -> AttachmentKey {
        AttachmentKey {
            root: [n; 32],
            size: 1_000,
        }
    }

    #[test]
    fn room_for_a_chunk_drops_the_lowest_ranked_first_and_never_a_pinned_one() {
        let mut room = Room::new(100);
        room.insert(key(1), 5, 40);
        room.insert(key(2), 1, 30);
        room.insert(key(3), 0, 20);
        room.pin(key(3), 0);
        room.pin(key(4), 9);
        assert_eq!(room.used(), 90);
        assert_eq!(room.take(key(4), 20).unwrap(), vec![key(2)]);
        assert_eq!(room.used(), 80);
        assert_eq!(room.take(key(4), 50).unwrap(), vec![key(1)]);
        assert_eq!(room.used(), 90, "the pinned one is kept");
        assert_eq!(
            room.take(key(4), 20),
            Err(RoomFull {
                needed: 20,
                free: 10
            })
        );
        assert_eq!(room.used(), 90, "nothing taken or dropped");
        assert!(room.contains(&key(3)));
    }

    #[test]
    fn a_description_takes_no_room_until_its_chunks_come() {
        let mut room = Room::new(100);
        room.insert(key(1), 1, 100);
        for n in 10..20 {
            room.pin(key(n), 9);
        }
        assert_eq!(room.used(), 100);
        assert!(
            room.contains(&key(1)),
            "nothing dropped for descriptions alone"
        );
        assert!(!room.could_fit(&key(30), 101), "larger than the limit");
        assert!(room.could_fit(&key(30), 100), "dropping what is not pinned");
    }

    #[test]
    fn nothing_is_dropped_for_what_would_not_fit_even_then() {
        let mut room = Room::new(100);
        room.insert(key(1), 1, 60);
        room.pin(key(2), 9);
        room.take(key(2), 30).unwrap();
        assert!(room.take(key(3), 80).is_err());
        assert!(room.contains(&key(1)));
    }

    #[test]
    fn a_lower_limit_drops_until_what_is_kept_fits() {
        let mut room = Room::new(100);
        room.insert(key(1), 3, 30);
        room.insert(key(2), 1, 30);
        room.insert(key(3), 2, 30);
        room.rank(&key(2), 4);
        assert_eq!(room.set_limit(50), vec![key(3), key(1)]);
        assert_eq!(room.used(), 30);
        room.unpin(&key(2), 4);
        assert_eq!(room.remove(&key(2)), 30);
        assert_eq!(room.used(), 0);
    }
}
