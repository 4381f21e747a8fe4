//! A newcomer gets a member's whole history over a data channel: Bob holds the messages, Cleo
//! joins, and her page receives, verifies and stores every one of them from him, none through
//! the relay. The benchmark run does the same with `PEERCHAT_NEWCOMER_MESSAGES` messages (500
//! unless set; `cargo xtask bench newcomer` sets 10,000) and prints how long it took, for
//! docs/benchmarks.md; the time is never asserted.

use crate::{browser, support};

use browser::{Browser, ChromeDriver};
use support::{unthrottled_config, TestRelay};

/// Milliseconds from Cleo online to her first envelope from a peer, from that one to the last
/// stored, and from online to the last stored.
struct Timings {
    to_first: f64,
    first_to_all: f64,
    to_all: f64,
}

/// Bob receives `count` messages, then Cleo joins and stores them all from him.
async fn newcomer_gets_the_whole_history(count: usize) -> Timings {
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
    cleo.wait_for_newest_shown(
        count.min(browser::LOG_WINDOW),
        &format!("message {}", count - 1),
    )
    .await;
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
    Timings {
        to_first,
        first_to_all,
        to_all,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newcomer_receives_and_stores_a_members_whole_history() {
    if browser::run_sealed() {
        return;
    }
    // More than one `want` (at most 256 ids) and many envelope frames over the data channel.
    newcomer_gets_the_whole_history(300).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench newcomer"]
#[allow(clippy::print_stdout, reason = "the timing is this benchmark's report")]
async fn benchmark_a_newcomer_receiving_a_members_whole_history() {
    if browser::run_sealed() {
        return;
    }
    let count = support::benchmark_number("PEERCHAT_NEWCOMER_MESSAGES", 500);
    let timings = newcomer_gets_the_whole_history(count).await;
    // Milliseconds, read by `cargo xtask bench newcomer` from stdout.
    println!(
        "newcomer: messages={count} online_to_first={:.0} first_to_all_stored={:.0} online_to_all_stored={:.0}",
        timings.to_first, timings.first_to_all, timings.to_all
    );
}
