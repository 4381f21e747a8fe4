//! An attachment crossing between virtual clients over loopback data channels: one starts with
//! a message and its file (and more messages) in its cache files, another starts empty, gets
//! the messages with the history and fetches the file. The benchmarks move
//! `PEERCHAT_ATTACHMENT_MEGABYTES` and print the rate and the peak memory the fetch added, and
//! how long text history takes beside a large transfer, for docs/benchmarks.md; never
//! asserted. That the file arrives whole, byte for byte, is, in every run.

use crate::{archive, support};

use archive::{resident_kib, seed_cache, virtual_client_template, wait_for};
use peerchat_shared::channel::ChannelName;
use peerchat_shared::chunk_tree::{leaf_hash, ChunkTree, CHUNK_BYTES};
use peerchat_shared::identity::SecretKey;
use peerchat_shared::ids::{AttachmentId, MessageIdGenerator};
use peerchat_shared::message::{Attachment, ClientNonce, Draft, MessageBody, Sha256Digest};
use peerchat_shared::time::UnixMillis;
use peerchat_shared::transfer::AttachmentKey;
use peerchat_virtual::{AttachmentCache, AttachmentLimits, Fleet, HistoryCache};
use sha2::{Digest as _, Sha256};
use std::time::{Duration, Instant};
use support::{unthrottled_config, TestRelay};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(600);

fn now() -> UnixMillis {
    UnixMillis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    )
}

/// The bytes of the file, made on the fly.
fn file_byte(index: usize) -> u8 {
    ((index * 31 + index / 4093) % 251) as u8
}

fn file_chunk(size: usize, index: usize) -> Vec<u8> {
    let start = index * CHUNK_BYTES;
    (start..(start + CHUNK_BYTES).min(size))
        .map(file_byte)
        .collect()
}

/// A message with a file of `size` bytes, stamped by `relay`, in the history cache file, and
/// the file's chunks in the attachment cache file; returns the file's key and SHA-256.
fn seed(
    history: &std::path::Path,
    attachments: &std::path::Path,
    limits: AttachmentLimits,
    relay: &SecretKey,
    size: usize,
) -> (AttachmentKey, [u8; 32]) {
    let count = size.div_ceil(CHUNK_BYTES).max(1);
    let mut sha256 = Sha256::new();
    let mut leaves = Vec::with_capacity(count);
    for index in 0..count {
        let chunk = file_chunk(size, index);
        sha256.update(&chunk);
        leaves.push(leaf_hash(&chunk));
    }
    let tree = ChunkTree::from_leaves(leaves);
    let sha256: [u8; 32] = sha256.finalize().into();
    let attachment = Attachment {
        name: "dataset.bin".into(),
        media_type: "application/octet-stream".into(),
        size: size as u64,
        sha256: Sha256Digest(sha256),
        root: Sha256Digest(tree.root()),
        image: None,
    };
    let key = AttachmentKey::of(&attachment);
    let author = SecretKey::from_seed([42; 32]);
    let draft = Draft::sign(
        &author,
        &relay.public_key(),
        ChannelName::new("general").unwrap(),
        ClientNonce([7; 16]),
        MessageBody::with_attachments("", vec![attachment]),
    );
    let verified = draft
        .verify(
            &relay.public_key(),
            &author.public_key().verifier().unwrap(),
        )
        .unwrap();
    // Random bits far from those of `seed_cache`'s ids, which may share the millisecond.
    let id = MessageIdGenerator::default()
        .next_for_message(now(), 1 << 100, 1)
        .unwrap();
    let envelope = verified
        .seal(id, relay)
        .verify(&relay.public_key().verifier().unwrap())
        .unwrap();
    let mut cache = HistoryCache::open(history, peerchat_virtual::CacheLimits::default()).unwrap();
    cache.insert(&[envelope], now()).unwrap();
    let mut files = AttachmentCache::open(attachments, limits).unwrap();
    assert!(files
        .admit(key, AttachmentId::of(id, 0).unwrap(), now())
        .unwrap());
    for index in 0..count {
        let proof = tree.proof(index);
        files
            .put_chunk(key, index as u64, file_chunk(size, index), proof, now())
            .unwrap();
    }
    (key, sha256)
}

struct Report {
    /// From the first chunk kept to the last.
    transfer: Duration,
    peak_added_kib: u64,
    /// From the fetcher's start to its holding the whole history, and how much of the file
    /// it held then.
    history: Duration,
    file_bytes_when_history_done: u64,
}

/// One virtual client holding a file of `size` bytes and `history` more messages; a second
/// one gets the history and fetches the file (over the same link), and is checked to hold
/// exactly those bytes.
async fn fetch_a_file_from_another_virtual_client(size: usize, history: usize) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let holder = Fleet {
        key_dir: dir.path().join("holder"),
        data_dir: Some(dir.path().join("holder")),
    };
    let fetcher = Fleet {
        key_dir: dir.path().join("fetcher"),
        data_dir: Some(dir.path().join("fetcher")),
    };
    let mut config = unthrottled_config();
    config.virtual_clients = holder
        .public_keys(1)
        .unwrap()
        .into_iter()
        .chain(fetcher.public_keys(1).unwrap())
        .collect();
    let relay_key = config.signing_key.clone();
    let relay = TestRelay::start(config).await;
    let mut template = virtual_client_template(&relay, "127.0.0.1:0");
    template.bytes_per_second = 1024 * peerchat_virtual::DEFAULT_BYTES_PER_SECOND;
    template.attachments = AttachmentLimits {
        max_bytes: 2 * size as u64 + 1024 * 1024,
    };
    std::fs::create_dir_all(dir.path().join("holder")).unwrap();
    std::fs::create_dir_all(dir.path().join("fetcher")).unwrap();
    let holder_config = holder.config(&template, 1);
    let history_file = holder_config.cache_file.unwrap();
    seed_cache(&history_file, &relay_key, history);
    let (key, sha256) = seed(
        &history_file,
        &holder_config.attachment_file.unwrap(),
        template.attachments,
        &relay_key,
        size,
    );
    let shutdown = CancellationToken::new();
    let holding = holder.start(&template, 1, &shutdown).unwrap();
    wait_for(PATIENCE, || holding[0].stats.cached_attachments() == 1).await;

    let before = resident_kib();
    let mut peak = before;
    let started = Instant::now();
    let fetching = fetcher.start(&template, 1, &shutdown).unwrap();
    let stats = &fetching[0].stats;
    let deadline = started + PATIENCE;
    let mut first_chunk = None;
    let mut history_done = None;
    while stats.cached_attachments() < 1 || history_done.is_none() {
        assert!(Instant::now() < deadline, "gave up waiting for the file");
        if first_chunk.is_none() && stats.attachment_bytes() > 0 {
            first_chunk = Some(Instant::now());
        }
        if history_done.is_none() && stats.cached_messages() == history as u64 + 1 {
            history_done = Some((started.elapsed(), stats.attachment_bytes()));
        }
        peak = peak.max(resident_kib());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (history, file_bytes_when_history_done) = history_done.unwrap();
    let transfer = first_chunk.unwrap_or_else(Instant::now).elapsed();
    assert_eq!(stats.attachment_bytes(), size as u64);
    shutdown.cancel();
    for client in fetching.into_iter().chain(holding) {
        client.task.await.unwrap();
    }
    relay.stop().await;
    let fetched = AttachmentCache::open(
        &fetcher.config(&template, 1).attachment_file.unwrap(),
        template.attachments,
    )
    .unwrap();
    let mut bytes = Sha256::new();
    for index in 0..size.div_ceil(CHUNK_BYTES).max(1) {
        let (data, _) = fetched.read_chunk(key, index as u64).unwrap().unwrap();
        bytes.update(&data);
    }
    assert_eq!(
        <[u8; 32]>::from(bytes.finalize()),
        sha256,
        "the fetched file is the file"
    );
    Report {
        transfer,
        peak_added_kib: peak.saturating_sub(before),
        history,
        file_bytes_when_history_done,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_virtual_client_fetches_a_file_from_another_whole() {
    fetch_a_file_from_another_virtual_client(3 * 1024 * 1024 + 77, 10).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench attachments"]
#[allow(clippy::print_stdout, reason = "the rate is this benchmark's report")]
async fn benchmark_a_virtual_client_fetching_a_file_from_another() {
    let megabytes = support::benchmark_number("PEERCHAT_ATTACHMENT_MEGABYTES", 100);
    let size = megabytes * 1024 * 1024;
    let report = fetch_a_file_from_another_virtual_client(size, 0).await;
    let seconds = report.transfer.as_secs_f64();
    println!(
        "virtual to virtual: mebibytes={megabytes} transfer_ms={:.0} mib_per_s={:.1} peak_added_kib={}",
        seconds * 1000.0,
        megabytes as f64 / seconds,
        report.peak_added_kib,
    );
}

/// Text history crossing the link a large transfer uses, against crossing it alone:
/// `PEERCHAT_HISTORY_MESSAGES` messages (10,000 unless set) with a file of
/// `PEERCHAT_ATTACHMENT_MEGABYTES` (1,024 unless set) and with a one-chunk file. Prints both
/// times and how much of the file had come when the history was whole, for
/// docs/benchmarks.md; never asserted.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench attachments"]
#[allow(clippy::print_stdout, reason = "the times are this benchmark's report")]
async fn benchmark_history_crossing_a_link_beside_a_large_transfer() {
    let messages = support::benchmark_number("PEERCHAT_HISTORY_MESSAGES", 10_000);
    let megabytes = support::benchmark_number("PEERCHAT_ATTACHMENT_MEGABYTES", 1_024);
    let alone = fetch_a_file_from_another_virtual_client(1_000, messages).await;
    let beside = fetch_a_file_from_another_virtual_client(megabytes * 1024 * 1024, messages).await;
    println!(
        "history beside a transfer: messages={messages} mebibytes={megabytes} alone_ms={:.0} beside_ms={:.0} file_mib_when_history_done={:.1}",
        alone.history.as_secs_f64() * 1000.0,
        beside.history.as_secs_f64() * 1000.0,
        beside.file_bytes_when_history_done as f64 / (1024.0 * 1024.0),
    );
}
