//! The web client in real headless Chromium profiles (fantoccini and ChromeDriver), against the
//! real relay or, for forged messages, a scripted one. Each test re-runs itself in a network
//! namespace of its own (`browser::run_sealed`), so the pages' WebRTC stays inside it.
//! Needs the web bundle (`cargo xtask web`). The benchmark runs are `#[ignore]`d: `cargo xtask
//! bench newcomer` and `bench render` run them (docs/benchmarks.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[path = "harness.rs"]
mod browser;
#[path = "../support/mod.rs"]
mod support;

mod attachments;
mod chat;
mod first_run;
mod history_newcomer;
mod history_render;
mod history_sync;
mod joining;
mod page_cache;
