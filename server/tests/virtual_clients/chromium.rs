//! Virtual clients with real browsers: Chromium profiles and virtual clients (the `webrtc`
//! crate) in a network namespace of their own, linked by real WebRTC data channels, beside the
//! real relay, which keeps no history. The page counts which envelopes came from archive peers.

use crate::{archive, browser, support};

use archive::{resident_kib, virtual_client_template, wait_until_cached};
use browser::{Browser, ChromeDriver};
use peerchat_virtual::{Fleet, DEFAULT_BYTES_PER_SECOND};
use std::path::Path;
use std::time::Duration;
use support::{unthrottled_config, TestRelay};
use tokio_util::sync::CancellationToken;

/// Guards against a hung test; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(60);

fn fleet(dir: &Path) -> Fleet {
    Fleet {
        key_dir: dir.to_path_buf(),
        data_dir: None,
    }
}

/// The relay's configuration, admitting the `count` virtual clients of `fleet`.
fn config_admitting(fleet: &Fleet, count: usize) -> peerchat_server::RelayConfig {
    let mut config = unthrottled_config();
    config.virtual_clients = fleet.public_keys(count).unwrap().into_iter().collect();
    config
}

/// A relay admitting `fleet`'s first virtual client, and that client, started.
async fn relay_with_one_archive(
    fleet: &Fleet,
) -> (
    TestRelay,
    peerchat_virtual::VirtualClient,
    CancellationToken,
) {
    let relay = TestRelay::start(config_admitting(fleet, 1)).await;
    let shutdown = CancellationToken::new();
    let archive = peerchat_virtual::start(
        fleet.config(&virtual_client_template(&relay, "0.0.0.0:0"), 1),
        shutdown.clone(),
    )
    .unwrap();
    (relay, archive, shutdown)
}

async fn open_online(driver: &ChromeDriver, url: &str) -> Browser {
    let browser = Browser::open(driver, url).await;
    browser.wait_until_online().await;
    browser
}

async fn post(browser: &Browser, count: usize) -> Vec<String> {
    let texts: Vec<String> = (1..=count).map(|n| format!("note {n}")).collect();
    for text in &texts {
        browser.send_message(text).await;
    }
    browser.wait_for_message_count(count).await;
    texts
}

#[tokio::test(flavor = "multi_thread")]
async fn with_only_a_virtual_client_left_a_newcomer_gets_the_history_from_it_after_a_relay_restart()
{
    if browser::run_sealed() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let fleet = fleet(keys.path());
    let (relay, archive, shutdown) = relay_with_one_archive(&fleet).await;
    let address = relay.address;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let posted = post(&ada, 100).await;
    wait_until_cached(&archive, 100).await;
    ada.close().await;
    relay.stop().await;

    let relay = TestRelay::start_on(address, config_admitting(&fleet, 1)).await;
    wait_until_relay_counts_virtual_clients(&relay, 1).await;
    let bea = open_online(&driver, &relay.url("/")).await;
    bea.wait_for_message_count(100).await;
    bea.wait_until(
        "the history to be up to date",
        "return document.body.dataset.historyState === 'up_to_date'",
    )
    .await;

    let shown: Vec<String> = bea.messages().await.into_iter().map(|m| m.text).collect();
    assert_eq!(shown, posted);
    assert_eq!(bea.dataset("envelopesOverDataChannel").await, "100");
    assert_eq!(bea.dataset("envelopesFromArchivePeers").await, "100");
    assert!(archive.stats.envelopes_served() >= 100);
    bea.close().await;
    shutdown.cancel();
    relay.stop().await;
}

async fn wait_until_relay_counts_virtual_clients(relay: &TestRelay, count: usize) {
    let expected = format!("peerchat_virtual_clients_online {count}\n");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !relay.metrics().await.contains(&expected) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {count} virtual clients at the relay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_member_online_the_newcomer_is_served_by_the_member_not_the_virtual_client() {
    if browser::run_sealed() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let fleet = fleet(keys.path());
    let (relay, archive, shutdown) = relay_with_one_archive(&fleet).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    post(&ada, 30).await;
    wait_until_cached(&archive, 30).await;

    let bea = open_online(&driver, &relay.url("/")).await;
    bea.wait_for_message_count(30).await;
    bea.wait_until(
        "the history to be up to date",
        "return document.body.dataset.historyState === 'up_to_date'",
    )
    .await;

    assert_eq!(bea.dataset("envelopesOverDataChannel").await, "30");
    assert_eq!(
        bea.dataset("envelopesFromArchivePeers").await,
        "0",
        "the member served the history"
    );
    ada.close().await;
    bea.close().await;
    shutdown.cancel();
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_virtual_clients_get_the_history_from_a_browser_and_from_each_other() {
    if browser::run_sealed() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let fleet = fleet(keys.path());
    let relay = TestRelay::start(config_admitting(&fleet, 10)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    post(&ada, 20).await;

    let shutdown = CancellationToken::new();
    let clients = fleet
        .start(&virtual_client_template(&relay, "0.0.0.0:0"), 10, &shutdown)
        .unwrap();
    for client in &clients {
        wait_until_cached(client, 20).await;
    }
    let from_browser: u64 = clients.iter().map(|c| c.stats.data_channels_open()).sum();
    assert!(from_browser >= 10, "each is linked to a peer");
    // And the browser sees them as archive peers.
    ada.wait_until(
        "the virtual clients to be listed as archive peers",
        "return [...document.querySelectorAll('.role')].filter(e => e.textContent === 'archive peer').length === 10",
    )
    .await;
    ada.close().await;
    shutdown.cancel();
    relay.stop().await;
}

/// What a Chromium newcomer's page measured while taking a virtual client's history.
struct Report {
    to_first: f64,
    first_to_all: f64,
    to_all: f64,
    envelopes_served: u64,
}

/// A virtual client starts with a cache file of `count` messages; a Chromium newcomer stores
/// every one of them from it (an archive peer), none through the relay.
async fn browser_newcomer_gets_a_seeded_history(count: usize) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet {
        key_dir: dir.path().to_path_buf(),
        data_dir: Some(dir.path().to_path_buf()),
    };
    let config = config_admitting(&fleet, 1);
    let relay_key = config.signing_key.clone();
    let relay = TestRelay::start(config).await;
    let mut template = virtual_client_template(&relay, "0.0.0.0:0");
    // Unthrottled: this measures the path, not the budget.
    template.bytes_per_second = 1024 * DEFAULT_BYTES_PER_SECOND;
    archive::seed_cache(
        &fleet.config(&template, 1).cache_file.unwrap(),
        &relay_key,
        count,
    );
    let shutdown = CancellationToken::new();
    let archive = fleet.start(&template, 1, &shutdown).unwrap();
    wait_until_cached(&archive[0], count as u64).await;

    let driver = ChromeDriver::start().await;
    let bea = Browser::open(&driver, &relay.url("/")).await;
    bea.wait_until(
        "every message to be stored",
        &format!("return document.body.dataset.envelopesFromArchivePeers === '{count}'"),
    )
    .await;
    let (to_first, first_to_all, to_all) = bea.peer_history_timings().await;
    assert_eq!(bea.dataset("envelopesOverRelay").await, "0");
    let envelopes_served = archive[0].stats.envelopes_served();
    bea.close().await;
    shutdown.cancel();
    relay.stop().await;
    Report {
        to_first,
        first_to_all,
        to_all,
        envelopes_served,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_newcomer_receives_a_virtual_clients_seeded_history() {
    if browser::run_sealed() {
        return;
    }
    browser_newcomer_gets_a_seeded_history(300).await;
}

/// How fast a Chromium newcomer gets a virtual client's history: a cache file of
/// `PEERCHAT_VIRTUAL_TO_BROWSER_MESSAGES` messages (300 unless set; `cargo xtask bench virtual`
/// sets more). The time is printed for docs/benchmarks.md, never asserted.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench virtual"]
#[allow(clippy::print_stdout, reason = "the timing is this benchmark's report")]
async fn benchmark_a_browser_newcomer_receiving_a_virtual_clients_seeded_history() {
    if browser::run_sealed() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let count = support::benchmark_number("PEERCHAT_VIRTUAL_TO_BROWSER_MESSAGES", 300);
    let report = browser_newcomer_gets_a_seeded_history(count).await;
    println!(
        "virtual to browser: messages={count} online_to_first={:.0} first_to_all_stored={:.0} online_to_all_stored={:.0} envelopes_served={}",
        report.to_first, report.first_to_all, report.to_all, report.envelopes_served
    );
}

/// A relay, a virtual client that holds a file a member posted before leaving, and a
/// newcomer's page showing the file's message (nothing fetched yet).
struct LeftWithTheVirtualClient {
    relay: TestRelay,
    archive: peerchat_virtual::VirtualClient,
    shutdown: CancellationToken,
    bea: Browser,
    _driver: ChromeDriver,
    _dirs: [tempfile::TempDir; 2],
}

async fn a_file_left_with_the_virtual_client(file: &[u8], name: &str) -> LeftWithTheVirtualClient {
    let keys = tempfile::tempdir().unwrap();
    let fleet = fleet(keys.path());
    let relay = TestRelay::start(config_admitting(&fleet, 1)).await;
    let shutdown = CancellationToken::new();
    let mut template = virtual_client_template(&relay, "0.0.0.0:0");
    // Its links' budget is not what these tests are about, and the file must fit its cache.
    template.bytes_per_second = 256 * 1024 * 1024;
    template.attachments.max_bytes = template.attachments.max_bytes.max(2 * file.len() as u64);
    let archive = peerchat_virtual::start(fleet.config(&template, 1), shutdown.clone()).unwrap();
    wait_until_relay_counts_virtual_clients(&relay, 1).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, file).unwrap();
    ada.choose_file("#attach-input", &path).await;
    ada.wait_until(
        "the file to be ready to send",
        "return document.querySelector('#uploads li[data-state=\"ready\"]') !== null",
    )
    .await;
    ada.send_message("the whole meeting").await;
    ada.wait_for_message_count(1).await;
    // Moving the file to the virtual client takes as long as it takes (a benchmark's file is
    // large); only a stall fails.
    let mut held = 0;
    let mut last_progress = tokio::time::Instant::now();
    while archive.stats.cached_attachments() < 1 {
        let now_held = archive.stats.attachment_bytes();
        if now_held != held {
            held = now_held;
            last_progress = tokio::time::Instant::now();
        }
        assert!(
            last_progress.elapsed() < PATIENCE,
            "the virtual client stopped receiving the file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ada.close().await;
    let bea = open_online(&driver, &relay.url("/")).await;
    bea.wait_for_message_count(1).await;
    LeftWithTheVirtualClient {
        relay,
        archive,
        shutdown,
        bea,
        _driver: driver,
        _dirs: [keys, dir],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_whose_sender_left_comes_to_a_newcomer_from_the_virtual_client() {
    if browser::run_sealed() {
        return;
    }
    // 20 MB.
    let file: Vec<u8> = (0..20 * 1024 * 1024)
        .map(|index: usize| ((index * 17 + index / 1013) % 256) as u8)
        .collect();
    // Every field is kept to the end: the ChromeDriver among them.
    let LeftWithTheVirtualClient {
        relay,
        archive,
        shutdown,
        bea,
        _driver,
        _dirs,
    } = a_file_left_with_the_virtual_client(&file, "recording.ogg").await;
    bea.eval("document.querySelector('#messages .file-action').click(); return true;")
        .await;
    bea.wait_until(
        "the file to be here",
        "return document.querySelector('#messages li.attachment[data-state=\"ready\"]') !== null",
    )
    .await;
    let peers = bea
        .eval("return document.querySelector('#messages li.attachment').dataset.peers")
        .await;
    assert_eq!(peers, archive.public_key.fingerprint().as_str());
    bea.eval("document.querySelector('#messages .file-action').click(); return true;")
        .await;
    let saved = bea.downloads.path().join("recording.ogg");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let partial = bea.downloads.path().join("recording.ogg.crdownload");
        if saved.exists() && !partial.exists() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::fs::read(&saved).unwrap() == file,
        "byte for byte the original"
    );
    assert!(archive.stats.chunks_served() >= 640);
    assert_eq!(bea.dataset("chunksFromArchivePeers").await, "640");
    bea.close().await;
    shutdown.cancel();
    relay.stop().await;
}

/// A virtual client holds a file of `PEERCHAT_ATTACHMENT_MEGABYTES` (100 unless set) whose
/// sender left; a newcomer's page downloads it from the virtual client. Prints the rate and
/// the peak memory of the page's renderer and of this process (relay and virtual client) for
/// docs/benchmarks.md; never asserted (the 20 MB test proves such a file arrives whole).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench attachments"]
#[allow(clippy::print_stdout, reason = "the rate is this benchmark's report")]
async fn benchmark_a_browser_fetching_a_file_from_a_virtual_client() {
    if browser::run_sealed() {
        return;
    }
    let megabytes = support::benchmark_number("PEERCHAT_ATTACHMENT_MEGABYTES", 100);
    let file: Vec<u8> = (0..megabytes * 1024 * 1024)
        .map(|index: usize| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let left = a_file_left_with_the_virtual_client(&file, "dataset.bin").await;
    drop(file);
    let before = resident_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(resident_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let renderer_before = left.bea.renderer_memory_kib();
    left.bea
        .eval("document.querySelector('#messages .file-action').click(); return true;")
        .await;
    let watch = left.bea.watch_until_ready("dataset.bin").await;
    sampler.abort();
    let seconds = watch.elapsed.as_secs_f64();
    println!(
        "virtual to browser (file): mebibytes={megabytes} transfer_ms={:.0} mib_per_s={:.1} receiving_renderer_before_kib={renderer_before} receiving_renderer_peak_kib={} serving_process_peak_added_kib={}",
        seconds * 1000.0,
        megabytes as f64 / seconds,
        watch.peak_renderer_kib,
        peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(before)
    );
    left.bea.close().await;
    left.shutdown.cancel();
    left.relay.stop().await;
}
