//! How fast a newcomer gets a member's whole history over a data channel: Bob holds the
//! messages, Cleo joins, and her page receives, verifies and stores every one of them from
//! him. The count is `PEERCHAT_NEWCOMER_MESSAGES` (500 unless set; `cargo xtask bench
//! newcomer` sets 10,000). The time is printed for docs/benchmarks.md, never asserted.

mod browser;
mod support;

use browser::{Browser, ChromeDriver};
use support::{unthrottled_config, TestRelay};

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout, reason = "the timing is this test's report")]
async fn a_newcomer_receives_and_stores_a_members_whole_history() {
    if browser::run_sealed() {
        return;
    }
    let count: usize = std::env::var("PEERCHAT_NEWCOMER_MESSAGES")
        .map(|value| value.parse().expect("a number of messages"))
        .unwrap_or(500);
    let relay = TestRelay::start(unthrottled_config()).await;
    let driver = ChromeDriver::start().await;
    let bob = Browser::open(&driver, &relay.url("/")).await;
    bob.wait_until_online().await;
    bob.receive_numbered(&relay, "general", count).await;

    let cleo = Browser::open(&driver, &relay.url("/")).await;
    cleo.wait_until(
        "Cleo to store every message",
        &format!("return document.body.dataset.envelopesOverDataChannel === '{count}'"),
    )
    .await;
    let (to_first, first_to_all, to_all) = cleo.peer_history_timings().await;
    assert_eq!(cleo.dataset("envelopesOverRelay").await, "0");
    // Milliseconds, read by `cargo xtask bench newcomer` from stdout.
    println!(
        "newcomer: messages={count} online_to_first={:.0} first_to_all_stored={:.0} online_to_all_stored={:.0}",
        to_first, first_to_all, to_all
    );
    cleo.wait_for_newest_shown(
        count.min(browser::LOG_WINDOW),
        &format!("message {}", count - 1),
    )
    .await;
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}
