//! What one channel's history holds, as reconciliation sees it: a sorted list of items, one per
//! stored envelope. An item is the message's time and a 32-byte negentropy id: the 16 bytes of
//! the message id, then 16 zero bytes. Ids are unique per relay, and every envelope is verified
//! when it arrives, so the id alone names a message; a store can list ids without reading
//! envelopes.

use crate::ids::MessageId;
use negentropy::{Bound, Id, Item, NegentropyStorageBase};
use std::collections::BTreeSet;

/// The reconciliation item of a message.
pub fn item_of(id: MessageId) -> Item {
    Item {
        timestamp: id.timestamp().0,
        id: Id::from_byte_array(lowest_id_with_prefix(id)),
    }
}

/// The message id an item stands for.
pub fn message_id_of(id: &Id) -> MessageId {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&id[..16]);
    MessageId::from_bytes(bytes)
}

/// A channel's items: a set for cheap inserts in any order (a newcomer receives history newest
/// first), and a sorted snapshot, rebuilt only when reconciliation needs it after a change.
#[derive(Debug, Default, Clone)]
pub struct ChannelIndex {
    items: BTreeSet<Item>,
    snapshot: SortedItems,
    snapshot_is_stale: bool,
}

impl ChannelIndex {
    /// Adds an item; false if it was there already.
    pub fn insert(&mut self, item: Item) -> bool {
        let added = self.items.insert(item);
        self.snapshot_is_stale |= added;
        added
    }

    /// Removes an item (a message the store no longer keeps); false if it was not there.
    pub fn remove(&mut self, id: MessageId) -> bool {
        let removed = self.items.remove(&item_of(id));
        self.snapshot_is_stale |= removed;
        removed
    }

    pub fn contains(&self, id: MessageId) -> bool {
        self.items.contains(&item_of(id))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items as negentropy reads them.
    pub fn sorted(&mut self) -> &SortedItems {
        if self.snapshot_is_stale {
            self.snapshot.0.clear();
            self.snapshot.0.extend(self.items.iter().copied());
            self.snapshot_is_stale = false;
        }
        &self.snapshot
    }
}

/// Items sorted by (time, id), as negentropy requires.
#[derive(Debug, Default, Clone)]
pub struct SortedItems(Vec<Item>);

fn lowest_id_with_prefix(id: MessageId) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&id.to_bytes());
    bytes
}

impl NegentropyStorageBase for SortedItems {
    fn size(&self) -> Result<usize, negentropy::Error> {
        Ok(self.0.len())
    }

    fn get_item(&self, i: usize) -> Result<Option<Item>, negentropy::Error> {
        Ok(self.0.get(i).copied())
    }

    fn iterate(
        &self,
        begin: usize,
        end: usize,
        callback: &mut dyn FnMut(Item, usize) -> Result<bool, negentropy::Error>,
    ) -> Result<(), negentropy::Error> {
        let end = end.min(self.0.len());
        for (offset, item) in self.0[begin.min(end)..end].iter().enumerate() {
            if !callback(*item, begin + offset)? {
                break;
            }
        }
        Ok(())
    }

    fn find_lower_bound(&self, first: usize, last: usize, value: &Bound) -> usize {
        let last = last.min(self.0.len());
        let first = first.min(last);
        first + self.0[first..last].partition_point(|item| *item < value.item)
    }
}
