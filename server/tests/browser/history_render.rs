//! A thousand cached messages after a reload: all of them are drawn from IndexedDB. The
//! benchmark run does the same and prints the times the page took for `cargo xtask bench
//! render` (docs/benchmarks.md); they are never asserted.

use crate::{browser, support};

use browser::{Browser, ChromeDriver};
use support::{unthrottled_config, TestRelay};

const CACHED: usize = 1_000;

/// Milliseconds after navigation start: the client ready, the newest page painted, and every
/// cached message drawn.
struct Timings {
    client_ready: serde_json::Value,
    first_paint: serde_json::Value,
    backlog_drawn: serde_json::Value,
}

/// Ada receives [`CACHED`] messages and reloads; every one is drawn again from IndexedDB.
async fn reload_with_a_cached_history() -> Timings {
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
    ada.close().await;
    relay.stop().await;
    Timings {
        client_ready,
        first_paint,
        backlog_drawn,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_cached_messages_are_drawn_after_a_reload() {
    if browser::run_sealed() {
        return;
    }
    reload_with_a_cached_history().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench render"]
#[allow(
    clippy::print_stdout,
    reason = "the timings are this benchmark's report"
)]
async fn benchmark_drawing_a_thousand_cached_messages_after_a_reload() {
    if browser::run_sealed() {
        return;
    }
    let Timings {
        client_ready,
        first_paint,
        backlog_drawn,
    } = reload_with_a_cached_history().await;
    // Milliseconds after navigation start, read by `cargo xtask bench render` from stdout.
    println!(
        "history render: client_ready={client_ready} newest_page_painted={first_paint} all_{CACHED}_drawn={backlog_drawn}"
    );
}
