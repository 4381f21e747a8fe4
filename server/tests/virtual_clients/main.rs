//! Virtual clients (the `webrtc` crate) against a real relay: with each other on loopback, with
//! Chromium pages, inside the relay's process, and the `peerchat-virtual` command as its own
//! process. Built only with the feature `virtual-clients` (a default). The benchmark runs are
//! `#[ignore]`d: `cargo xtask bench virtual` runs them (docs/benchmarks.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

mod archive;
#[path = "../browser/harness.rs"]
mod browser;
#[path = "../support/mod.rs"]
mod support;

mod attachment_throughput;
mod binary;
mod chromium;
mod loopback;
mod throughput;
