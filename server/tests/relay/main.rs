//! The relay without a browser or WebRTC: the protocol over real loopback WebSockets, the HTTP
//! surface, attacks on the binary, and the binary's command line. It links neither fantoccini
//! nor the `webrtc` crate, and builds with `--no-default-features` (no virtual clients).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[path = "../support/mod.rs"]
mod support;

mod attacks;
mod command_line;
mod http_surface;
mod protocol;
