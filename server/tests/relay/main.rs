//! The relay without a browser or WebRTC: the protocol over real loopback WebSockets, the HTTP
//! surface, attacks on the binary, and the binary's command line. It links neither fantoccini
//! nor the `webrtc` crate, and builds with `--no-default-features` (no virtual clients).

#[path = "../support/mod.rs"]
mod support;

mod attacks;
mod command_line;
mod http_surface;
mod protocol;
