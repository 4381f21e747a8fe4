//! History crossing between virtual clients: one starts with a cache file holding a seeded
//! history, more start empty, and each pulls the whole history over data channels on loopback.
//! The benchmark run seeds `PEERCHAT_VIRTUAL_MESSAGES` messages (1,000 unless set; `cargo xtask
//! bench virtual` sets more) for `PEERCHAT_VIRTUAL_PULLING` virtual clients (ten unless set)
//! and prints how fast, and what each costs in memory, for docs/benchmarks.md; those are never
//! asserted. That every message arrives is, in both runs.

use crate::{archive, support};

use archive::{resident_kib, seed_cache, virtual_client_template, wait_for};
use peerchat_virtual::{Fleet, DEFAULT_BYTES_PER_SECOND};
use std::time::{Duration, Instant};
use support::{unthrottled_config, TestRelay};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(600);

/// What one run measured.
struct Report {
    first_done: Duration,
    all_done: Duration,
    per_client_kib: u64,
}

/// One virtual client with `count` seeded messages, then `pulling` empty ones that each get
/// them all.
async fn pull_a_seeded_history(count: usize, pulling: usize) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let seed = Fleet {
        key_dir: dir.path().join("seed"),
        data_dir: Some(dir.path().join("seed")),
    };
    let ten = Fleet {
        key_dir: dir.path().join("ten"),
        data_dir: None,
    };
    let mut config = unthrottled_config();
    config.virtual_clients = seed
        .public_keys(1)
        .unwrap()
        .into_iter()
        .chain(ten.public_keys(pulling).unwrap())
        .collect();
    let relay_key = config.signing_key.clone();
    let relay = TestRelay::start(config).await;
    let mut template = virtual_client_template(&relay, "127.0.0.1:0");
    // Unthrottled: this measures the path, not the budget.
    template.bytes_per_second = 1024 * DEFAULT_BYTES_PER_SECOND;
    let shutdown = CancellationToken::new();
    std::fs::create_dir_all(dir.path().join("seed")).unwrap();
    seed_cache(
        &seed.config(&template, 1).cache_file.unwrap(),
        &relay_key,
        count,
    );
    let source = seed.start(&template, 1, &shutdown).unwrap();
    wait_for(PATIENCE, || {
        source[0].stats.cached_messages() == count as u64
    })
    .await;

    let before = resident_kib();
    let started = Instant::now();
    let clients = ten.start(&template, pulling, &shutdown).unwrap();
    let mut first_done = None;
    for client in &clients {
        wait_for(PATIENCE, || client.stats.cached_messages() == count as u64).await;
        first_done.get_or_insert_with(|| started.elapsed());
    }
    let all_done = started.elapsed();
    let per_client_kib = resident_kib().saturating_sub(before) / pulling as u64;
    shutdown.cancel();
    relay.stop().await;
    Report {
        first_done: first_done.unwrap(),
        all_done,
        per_client_kib,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_virtual_clients_pull_a_seeded_history_from_one_over_data_channels() {
    pull_a_seeded_history(300, 10).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench virtual"]
#[allow(clippy::print_stdout, reason = "the timing is this benchmark's report")]
async fn benchmark_virtual_clients_pulling_a_seeded_history() {
    let count = support::benchmark_number("PEERCHAT_VIRTUAL_MESSAGES", 1_000);
    let pulling = support::benchmark_number("PEERCHAT_VIRTUAL_PULLING", 10);
    let report = pull_a_seeded_history(count, pulling).await;
    let first = report.first_done.as_secs_f64();
    println!(
        "virtual sync: messages={count} clients={pulling} first_client_ms={:.0} first_client_msgs_per_s={:.0} all_ms={:.0} resident_kib_per_client={}",
        first * 1000.0,
        count as f64 / first,
        report.all_done.as_secs_f64() * 1000.0,
        report.per_client_kib,
    );
}
