//! What one channel's history holds, as reconciliation sees it: a sorted list of items, one per
//! stored envelope. An item is the message's time and a 32-byte negentropy id: the 16 bytes of
//! the message id, then 16 zero bytes. Ids are unique per relay, and every envelope is verified
//! when it arrives, so the id alone names a message; a store can list ids without reading
//! envelopes.

use crate::ids::MessageId;
use negentropy::{Bound, Id, Item, NegentropyStorageBase};

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

/// Items sorted by (time, id), as negentropy requires.
#[derive(Debug, Default, Clone)]
pub struct ChannelIndex {
    items: Vec<Item>,
}

impl ChannelIndex {
    /// Adds an item; false if it was there already.
    pub fn insert(&mut self, item: Item) -> bool {
        // New messages are usually the newest: check the end before searching.
        if self.items.last().is_none_or(|last| *last < item) {
            self.items.push(item);
            return true;
        }
        match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(position) => {
                self.items.insert(position, item);
                true
            }
        }
    }

    pub fn contains(&self, id: MessageId) -> bool {
        self.items.binary_search(&item_of(id)).is_ok()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn lowest_id_with_prefix(id: MessageId) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&id.to_bytes());
    bytes
}

impl NegentropyStorageBase for ChannelIndex {
    fn size(&self) -> Result<usize, negentropy::Error> {
        Ok(self.items.len())
    }

    fn get_item(&self, i: usize) -> Result<Option<Item>, negentropy::Error> {
        Ok(self.items.get(i).copied())
    }

    fn iterate(
        &self,
        begin: usize,
        end: usize,
        callback: &mut dyn FnMut(Item, usize) -> Result<bool, negentropy::Error>,
    ) -> Result<(), negentropy::Error> {
        let end = end.min(self.items.len());
        for (offset, item) in self.items[begin.min(end)..end].iter().enumerate() {
            if !callback(*item, begin + offset)? {
                break;
            }
        }
        Ok(())
    }

    fn find_lower_bound(&self, first: usize, last: usize, value: &Bound) -> usize {
        let last = last.min(self.items.len());
        let first = first.min(last);
        first + self.items[first..last].partition_point(|item| *item < value.item)
    }
}
