//! The virtual client's cache under the history-store conformance suite, in memory and in a
//! redb file: it answers pages, ranges, counts, ids and lookups as every member's store does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

use peerchat_shared::store::conformance;
use peerchat_shared::time::UnixMillis;
use peerchat_virtual::cache::{CacheLimits, CacheStore, HistoryCache};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Nothing is too old or too much: the suite checks what a store answers, not eviction.
fn keep_everything() -> CacheLimits {
    CacheLimits {
        window: Duration::MAX,
        max_bytes: usize::MAX,
    }
}

fn clock() -> UnixMillis {
    UnixMillis(1_900_000_000_000)
}

#[test]
fn an_in_memory_cache_passes_the_history_store_conformance_suite() {
    futures_executor::block_on(conformance::run_all(|| async {
        CacheStore::new(HistoryCache::in_memory(keep_everything()), clock)
    }));
}

#[test]
fn a_cache_kept_in_a_file_passes_the_history_store_conformance_suite() {
    let folder = tempfile::tempdir().unwrap();
    let made = AtomicUsize::new(0);
    futures_executor::block_on(conformance::run_all(|| {
        let file = folder.path().join(format!(
            "cache-{}.redb",
            made.fetch_add(1, Ordering::Relaxed)
        ));
        async move {
            let cache = HistoryCache::open(&file, keep_everything()).unwrap();
            CacheStore::new(cache, clock)
        }
    }));
}
