//! The bytes of files each author may have fetched automatically (without the member opening
//! them): a burst that refills over [`REFILL_MILLIS`], per author, so one member posting file
//! after file cannot fill everyone's storage and links with them. Files beyond it are fetched
//! when opened. The authors followed are bounded; the one left alone longest is forgotten first
//! (by then its budget has mostly refilled).

use crate::budget::Budget;
use crate::identity::PublicKey;
use crate::time::UnixMillis;
use std::collections::HashMap;

/// Time in which an author's whole burst comes back.
const REFILL_MILLIS: u64 = 10 * 60 * 1000;
/// Authors whose budgets are followed at once.
const AUTOMATIC_AUTHORS: usize = 256;

/// Per-author budgets of automatic fetches.
#[derive(Debug)]
pub struct AutomaticFetches {
    burst_bytes: u64,
    authors: HashMap<PublicKey, (Budget, UnixMillis)>,
}

impl AutomaticFetches {
    /// Each author may have `burst_bytes` fetched at once, and as much again every
    /// [`REFILL_MILLIS`].
    pub fn new(burst_bytes: u64) -> Self {
        Self {
            burst_bytes,
            authors: HashMap::new(),
        }
    }

    /// Whether a file of `bytes` by `author` may be fetched now without being opened; counts
    /// it if so.
    pub fn allow(&mut self, author: PublicKey, bytes: u64, now: UnixMillis) -> bool {
        if !self.authors.contains_key(&author) && self.authors.len() >= AUTOMATIC_AUTHORS {
            self.forget_the_longest_left_alone();
        }
        let burst = self.burst_bytes as f64;
        let per_second = burst * 1000.0 / REFILL_MILLIS as f64;
        let (budget, used_at) = self
            .authors
            .entry(author)
            .or_insert_with(|| (Budget::full(burst, per_second, now), now));
        *used_at = now;
        budget.try_spend(now, bytes as f64)
    }

    fn forget_the_longest_left_alone(&mut self) {
        let oldest = self
            .authors
            .iter()
            .min_by_key(|(_, (_, used_at))| *used_at)
            .map(|(author, _)| *author);
        if let Some(author) = oldest {
            self.authors.remove(&author);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;

    const MIB: u64 = 1024 * 1024;

    fn author(n: u16) -> PublicKey {
        let mut seed = [0u8; 32];
        seed[..2].copy_from_slice(&n.to_le_bytes());
        SecretKey::from_seed(seed).public_key()
    }

    #[test]
    fn an_author_gets_the_burst_then_what_time_gives_back() {
        let start = UnixMillis(1_000_000);
        let mut fetches = AutomaticFetches::new(32 * MIB);
        assert!((0..16).all(|_| fetches.allow(author(1), 2 * MIB, start)));
        assert!(
            !fetches.allow(author(1), 2 * MIB, start),
            "the burst is spent"
        );
        assert!(
            fetches.allow(author(2), 2 * MIB, start),
            "others are not held back"
        );
        let sixteenth_later = UnixMillis(start.0 + REFILL_MILLIS / 16);
        assert!(fetches.allow(author(1), 2 * MIB, sixteenth_later));
        assert!(!fetches.allow(author(1), 2 * MIB, sixteenth_later));
    }

    #[test]
    fn a_refused_file_takes_nothing() {
        let start = UnixMillis(1_000_000);
        let mut fetches = AutomaticFetches::new(32 * MIB);
        assert!(!fetches.allow(author(1), 33 * MIB, start));
        assert!(fetches.allow(author(1), 32 * MIB, start));
    }

    #[test]
    fn the_authors_followed_are_bounded_and_the_longest_left_alone_goes_first() {
        let start = UnixMillis(1_000_000);
        let mut fetches = AutomaticFetches::new(32 * MIB);
        assert!(fetches.allow(author(0), 32 * MIB, start));
        for n in 1..AUTOMATIC_AUTHORS as u16 {
            assert!(fetches.allow(author(n), 32 * MIB, UnixMillis(start.0 + u64::from(n))));
        }
        // Author 1 spends again, so author 0 is the one left alone longest.
        assert!(!fetches.allow(author(1), MIB, UnixMillis(start.0 + 1_000)));
        assert!(fetches.allow(author(9_999), MIB, UnixMillis(start.0 + 1_001)));
        assert_eq!(fetches.authors.len(), AUTOMATIC_AUTHORS);
        assert!(!fetches.authors.contains_key(&author(0)));
        assert!(
            !fetches.allow(author(1), MIB, UnixMillis(start.0 + 1_002)),
            "author 1 is still followed"
        );
    }
}
