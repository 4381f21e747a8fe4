//! A thousand cached messages after a reload: all of them are drawn from IndexedDB, and the
//! times the page took are printed for `cargo xtask bench render` (docs/benchmarks.md).

mod browser;
mod support;

use browser::{Browser, ChromeDriver};
use support::{unthrottled_config, TestRelay};

const CACHED: usize = 1_000;

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout, reason = "the timings are this test's report")]
async fn a_thousand_cached_messages_are_drawn_after_a_reload() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(unthrottled_config()).await;
    let driver = ChromeDriver::start().await;
    let ada = Browser::open(&driver, &relay.url("/")).await;
    ada.wait_until_online().await;
    ada.receive_numbered(&relay, "general", CACHED).await;

    ada.reload().await;
    ada.wait_for_message_count(CACHED).await;
    let shown = ada.messages().await;
    assert_eq!(shown[0].text, "message 0");
    assert_eq!(shown[CACHED - 1].text, format!("message {}", CACHED - 1));
    let milestone = |name: &str| format!("return Number(document.body.dataset.{name})");
    let client_ready = ada.eval(&milestone("clientReadyMs")).await;
    let first_paint = ada.eval(&milestone("firstPaintMs")).await;
    ada.wait_until(
        "the backlog to be drawn",
        "return document.body.dataset.backlogDrawnMs !== undefined",
    )
    .await;
    let backlog_drawn = ada.eval(&milestone("backlogDrawnMs")).await;
    // Milliseconds after navigation start, read by `cargo xtask bench render` from stdout.
    println!(
        "history render: client_ready={client_ready} newest_page_painted={first_paint} all_{CACHED}_drawn={backlog_drawn}"
    );
    ada.close().await;
    relay.stop().await;
}
