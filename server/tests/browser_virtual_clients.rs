//! Virtual clients with real browsers: Chromium profiles and virtual clients (the `webrtc`
//! crate) in a network namespace of their own, linked by real WebRTC data channels, beside the
//! real relay, which keeps no history. The page counts which envelopes came from archive peers.

mod browser;
mod support;

use browser::{Browser, ChromeDriver};
use peerchat_virtual::{
    CacheLimits, Fleet, LinkSettings, VirtualClient, VirtualClientConfig, DEFAULT_BYTES_PER_SECOND,
};
use std::path::Path;
use std::time::Duration;
use support::{unthrottled_config, TestRelay};
use tokio_util::sync::CancellationToken;

/// Guards against a hung test; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(60);

fn template(relay: &TestRelay) -> VirtualClientConfig {
    VirtualClientConfig {
        relay_url: format!("ws://{}/ws", relay.address),
        key_file: "unused".into(),
        invite: None,
        channels: None,
        cache: CacheLimits::default(),
        cache_file: None,
        // Every interface of the namespace: the one Chromium gathers its candidates on.
        links: LinkSettings {
            udp_bind: vec!["0.0.0.0:0".parse().unwrap()],
            mdns: false,
        },
        bytes_per_second: DEFAULT_BYTES_PER_SECOND,
    }
}

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

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until_cached(client: &VirtualClient, count: u64) {
    wait_until(&format!("{count} cached messages"), || {
        client.stats.cached_messages() == count
    })
    .await;
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
    let relay = TestRelay::start(config_admitting(&fleet, 1)).await;
    let address = relay.address;
    let shutdown = CancellationToken::new();
    let archive =
        peerchat_virtual::start(fleet.config(&template(&relay), 1), shutdown.clone()).unwrap();
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
    let relay = TestRelay::start(config_admitting(&fleet, 1)).await;
    let shutdown = CancellationToken::new();
    let archive =
        peerchat_virtual::start(fleet.config(&template(&relay), 1), shutdown.clone()).unwrap();
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
    let clients = fleet.start(&template(&relay), 10, &shutdown).unwrap();
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
