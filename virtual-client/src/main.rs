//! `peerchat-virtual`: runs one or more virtual clients (headless archive peers) against a relay
//! (the command line is `peerchat_virtual::cli`).

fn main() -> anyhow::Result<()> {
    peerchat_virtual::cli::main(std::env::args_os())
}
