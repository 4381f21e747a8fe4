//! How fast history crosses between virtual clients, and what each costs in memory: one virtual
//! client starts with a cache file holding `PEERCHAT_VIRTUAL_MESSAGES` messages (1,000 unless
//! set; `cargo xtask bench virtual` sets more), `PEERCHAT_VIRTUAL_PULLING` more (ten unless
//! set) start empty, and each pulls the whole
//! history over data channels on loopback. Times and memory are printed for
//! docs/benchmarks.md, never asserted; that every message arrives is.

mod support;

use peerchat_virtual::{Fleet, DEFAULT_BYTES_PER_SECOND};
use std::time::{Duration, Instant};
use support::{seed_cache, unthrottled_config, virtual_client_template, TestRelay};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(600);

/// This process's resident memory in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout, reason = "the timing is this test's report")]
async fn ten_virtual_clients_pull_a_seeded_history_from_one_over_data_channels() {
    let count: usize = std::env::var("PEERCHAT_VIRTUAL_MESSAGES")
        .map(|value| value.parse().expect("a number of messages"))
        .unwrap_or(1_000);
    let pulling: usize = std::env::var("PEERCHAT_VIRTUAL_PULLING")
        .map(|value| value.parse().expect("a number of virtual clients"))
        .unwrap_or(10);
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
    wait(|| source[0].stats.cached_messages() == count as u64).await;

    let before = resident_kib();
    let started = Instant::now();
    let clients = ten.start(&template, pulling, &shutdown).unwrap();
    let mut first_done = None;
    for client in &clients {
        wait(|| client.stats.cached_messages() == count as u64).await;
        first_done.get_or_insert_with(|| started.elapsed());
    }
    let all_done = started.elapsed();
    let per_client_kib = resident_kib().saturating_sub(before) / pulling as u64;
    let first = first_done.unwrap().as_secs_f64();
    println!(
        "virtual sync: messages={count} clients={pulling} first_client_ms={:.0} first_client_msgs_per_s={:.0} all_ms={:.0} resident_kib_per_client={per_client_kib}",
        first * 1000.0,
        count as f64 / first,
        all_done.as_secs_f64() * 1000.0,
    );
    shutdown.cancel();
    relay.stop().await;
}

async fn wait(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
