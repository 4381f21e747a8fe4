//! How fast a newcomer gets a member's whole history over a data channel: Bob holds the
//! messages, Cleo joins, and her page receives, verifies and stores every one of them from
//! him. The count is `PEERCHAT_NEWCOMER_MESSAGES` (500 unless set; `cargo xtask bench
//! newcomer` sets 10,000). The time is printed for docs/benchmarks.md, never asserted.

mod browser;
mod support;

use browser::{Browser, ChromeDriver};
use peerchat_shared::channel::ChannelName;
use peerchat_shared::frames::ClientToRelay;
use peerchat_shared::message::{ClientNonce, Draft, MessageBody};
use support::{unthrottled_config, TestRelay};

/// Messages posted per connection before waiting for Bob's page to store them, so that it never
/// falls behind far enough to be dropped as a slow reader. (A fresh connection per chunk: one
/// left unread while Bob catches up would be closed by the relay as idle.)
const CHUNK: usize = 500;

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
    for chunk_start in (0..count).step_by(CHUNK) {
        let mut poster = relay.member(40).await;
        poster.join("general").await;
        let chunk_end = (chunk_start + CHUNK).min(count);
        for index in chunk_start..chunk_end {
            let draft = Draft::sign(
                &poster.key,
                &poster.relay,
                ChannelName::new("general").unwrap(),
                ClientNonce((index as u128).to_be_bytes()),
                MessageBody::text(format!("message {index}")),
            );
            poster.send(&ClientToRelay::Send { draft }).await;
        }
        poster.drain().await;
        drop(poster);
        bob.wait_for_message_count(chunk_end).await;
    }

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
    cleo.wait_for_message_count(count).await;
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}
