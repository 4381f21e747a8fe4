//! `peerchat-virtual`: the headless archive peer. The connection, sync engine and cache arrive
//! with the virtual-client issue; this build reports what it is and which protocol it speaks.

use clap::Parser;

/// A headless peerchat member that keeps recent history for newcomers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Options {}

fn main() -> anyhow::Result<()> {
    Options::parse();
    anyhow::bail!(
        "peerchat-virtual {} (protocol v{}) cannot connect to a relay yet",
        env!("CARGO_PKG_VERSION"),
        peerchat_shared::PROTOCOL_VERSION
    )
}
