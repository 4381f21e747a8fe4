//! `cargo xtask`: peerchat's developer commands. `serve` and `test` each make the machine ready
//! first (see `setup`), so a fresh Debian or Ubuntu machine with rustup's Rust needs nothing else.

mod bench;
mod bundle;
mod deps;
mod endurance;
mod process;
mod setup;
mod wasm;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(about = "peerchat developer commands")]
struct Options {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what building and testing need (idempotent: skips what is there).
    Setup {
        /// Only what building the relay needs (the wasm32 toolchain and wasm-bindgen-cli), not
        /// the browser for tests: the Dockerfile's toolchain layer.
        #[arg(long)]
        build_only: bool,
    },
    /// Build the WASM client and the web bundle the relay embeds (web/dist).
    Web,
    /// Set up, build the web bundle and the release relay (target/release/peerchat-server), as
    /// the Dockerfile does.
    Dist,
    /// Build as `dist` does, then run the relay on http://127.0.0.1:8080 (or `--listen`).
    Serve {
        /// Options for the relay, e.g. `-- --listen 127.0.0.1:9000` (see `--help` after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        relay_options: Vec<String>,
    },
    /// Set up and run every check: fmt, the crate dependency rules (xtask/src/deps.rs), the
    /// page's types (tsc), clippy, native tests, wasm tests in headless Chromium, and the fuzz
    /// targets briefly where cargo-fuzz is.
    Test,
    /// What CI runs (.ci/run): the same as `test`.
    Ci,
    /// Benchmarks; results go in docs/benchmarks.md.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
    /// Members joining, chatting, signalling and leaving at random against the release relay
    /// (with a virtual client inside) for a while; the relay's memory, open files and threads
    /// are reported every minute and must stay flat.
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        #[arg(long, default_value_t = 200)]
        members: usize,
        /// Virtual clients inside the relay.
        #[arg(long, default_value_t = 1)]
        virtual_clients: usize,
    },
    /// Fuzz frame decoding and the sync engine for a time budget per target (installs
    /// cargo-fuzz when missing). `cargo xtask test` runs each briefly when cargo-fuzz is there.
    Fuzz {
        /// Seconds to fuzz each target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Relay memory, fan-out throughput, latency and CPU per delivery (two processes, loopback).
    Relay {
        /// Runs of each scenario (report the median).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// The history sync engine in simulation: 1,000 peers, 10,000 messages, loss and churn.
    Sync,
    /// A 2 MiB photo spreading through a 50- and a 1,000-member channel, in simulation.
    Gossip,
    /// A newcomer's page getting a member's whole history over a data channel, in Chromium.
    Newcomer {
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// Virtual clients: ten pulling a seeded history from one (release build, with memory per
    /// client), and a Chromium newcomer pulling it from one.
    Virtual {
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
    },
    /// An attachment between virtual clients over loopback data channels (release build):
    /// the rate and the peak memory the fetch adds.
    Attachments {
        #[arg(long, default_value_t = 100)]
        megabytes: usize,
    },
    /// Reloading a page with 1,000 cached messages in headless Chromium.
    Render {
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// Bytes on the wire for opening the page in Chromium: a first and a repeat visit.
    Page,
    /// Idle logged-in members in one relay process under a memory limit (a cgroup; root).
    Idle {
        #[arg(long, default_value_t = 20_000)]
        members: usize,
        #[arg(long, default_value_t = 256)]
        memory_megabytes: u64,
    },
}

fn main() -> Result<()> {
    let options = Options::parse();
    let root = workspace_root();
    match options.command {
        Command::Setup { build_only } => {
            let needs = if build_only {
                setup::Needs::WebBuild
            } else {
                setup::Needs::Everything
            };
            setup::ensure(needs).map(drop)
        }
        Command::Web => {
            let toolchain = setup::ensure(setup::Needs::WebBuild)?;
            wasm::build_web_bundle(&root, &toolchain)
        }
        Command::Dist => dist(&root).map(drop),
        Command::Serve { relay_options } => serve(&root, &relay_options),
        Command::Test | Command::Ci => test(&root),
        Command::Bench {
            target: BenchTarget::Relay { repeats },
        } => bench::relay(&root, repeats),
        Command::Bench {
            target: BenchTarget::Sync,
        } => process::run(process::cargo(&root).args([
            "run",
            "--release",
            "--locked",
            "--package",
            "peerchat-shared",
            "--example",
            "sync_benchmark",
        ])),
        Command::Bench {
            target: BenchTarget::Gossip,
        } => process::run(process::cargo(&root).args([
            "test",
            "--release",
            "--locked",
            "--package",
            "peerchat-shared",
            "--test",
            "attachment_gossip",
            "--",
            "--include-ignored",
            "--nocapture",
        ])),
        Command::Bench {
            target: BenchTarget::Attachments { megabytes },
        } => bench::attachments(&root, megabytes),
        Command::Bench {
            target: BenchTarget::Page,
        } => {
            let toolchain = setup::ensure(setup::Needs::Everything)?;
            wasm::build_web_bundle(&root, &toolchain)?;
            bench::page(&root)
        }
        Command::Bench {
            target: BenchTarget::Render { repeats },
        } => {
            let toolchain = setup::ensure(setup::Needs::Everything)?;
            wasm::build_web_bundle(&root, &toolchain)?;
            bench::render(&root, repeats)
        }
        Command::Bench {
            target: BenchTarget::Newcomer { messages, repeats },
        } => {
            let toolchain = setup::ensure(setup::Needs::Everything)?;
            wasm::build_web_bundle(&root, &toolchain)?;
            bench::newcomer(&root, messages, repeats)
        }
        Command::Bench {
            target: BenchTarget::Virtual { messages },
        } => {
            let toolchain = setup::ensure(setup::Needs::Everything)?;
            wasm::build_web_bundle(&root, &toolchain)?;
            bench::virtual_clients(&root, messages)
        }
        Command::Bench {
            target:
                BenchTarget::Idle {
                    members,
                    memory_megabytes,
                },
        } => endurance::idle(&root, members, memory_megabytes),
        Command::Soak {
            minutes,
            members,
            virtual_clients,
        } => endurance::soak(&root, minutes, members, virtual_clients),
        Command::Fuzz { seconds } => fuzz(&root, seconds),
    }
}

#[allow(
    clippy::expect_used,
    reason = "xtask's place in the workspace is fixed"
)]
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Builds the web bundle and the release relay with it built in; returns the relay's path.
fn dist(root: &Path) -> Result<PathBuf> {
    let toolchain = setup::ensure(setup::Needs::WebBuild)?;
    wasm::build_web_bundle(root, &toolchain)?;
    process::run(process::cargo(root).args([
        "build",
        "--release",
        "--locked",
        "--package",
        "peerchat-server",
        "--bin",
        "peerchat-server",
    ]))?;
    let relay = root.join("target/release/peerchat-server");
    eprintln!("xtask: relay built: {}", relay.display());
    Ok(relay)
}

/// Runs the relay built by [`dist`] in the workspace root (its key goes to peerchat-data/); it
/// logs the address to open.
fn serve(root: &Path, relay_options: &[String]) -> Result<()> {
    let relay = dist(root)?;
    process::run(
        std::process::Command::new(relay)
            .current_dir(root)
            .args(relay_options),
    )
}

fn test(root: &Path) -> Result<()> {
    let toolchain = setup::ensure(setup::Needs::Everything)?;
    process::run(process::cargo(root).args(["fmt", "--all", "--check"]))?;
    deps::check(root)?;
    // The relay embeds the bundle, so it is built before anything compiles the relay.
    wasm::build_web_bundle(root, &toolchain)?;
    wasm::check_page_types(root, &toolchain)?;
    process::run(
        process::cargo(root)
            .args(["clippy", "--workspace", "--all-targets", "--locked", "--"])
            .args(["--deny", "warnings"]),
    )?;
    // The relay without its default features: the library and relay tests, without WebRTC.
    process::run(
        process::cargo(root)
            .args([
                "clippy",
                "--package",
                "peerchat-server",
                "--no-default-features",
            ])
            .args(["--all-targets", "--locked", "--", "--deny", "warnings"]),
    )?;
    wasm::clippy(root, &toolchain)?;
    process::run(process::cargo(root).args(["test", "--workspace", "--locked"]))?;
    // The relay without its default features, as an operator may build it: its command line,
    // with no WebRTC stack compiled (it refuses `--virtual-clients` then, saying why).
    process::run(
        process::cargo(root)
            .args([
                "test",
                "--package",
                "peerchat-server",
                "--no-default-features",
            ])
            .args(["--locked", "--test", "relay", "--", "command_line::"]),
    )?;
    wasm::test_in_browser(root, &toolchain, "peerchat-shared")?;
    wasm::test_in_browser(root, &toolchain, "peerchat-client-wasm")?;
    if setup::has_cargo_fuzz() {
        fuzz_targets(root, FUZZ_SECONDS_IN_TEST)
    } else {
        eprintln!("xtask: cargo-fuzz is not installed: the fuzz targets did not run (cargo xtask fuzz installs it)");
        Ok(())
    }
}

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SECONDS_IN_TEST: u64 = 15;

fn fuzz(root: &Path, seconds: u64) -> Result<()> {
    setup::ensure_cargo_fuzz()?;
    fuzz_targets(root, seconds)
}

fn fuzz_targets(root: &Path, seconds: u64) -> Result<()> {
    let fuzz_dir = root.join("shared").join("fuzz");
    for target in [
        "decode_client_frame",
        "decode_relay_frame",
        "decode_peer_frame",
        "sync_peer_frames",
        "decode_chunk_frame",
    ] {
        // The first folder collects the corpus (git-ignored); the second holds committed seeds.
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        process::run(
            process::cargo(root)
                .current_dir(root.join("shared"))
                // cargo-fuzz needs nightly-only flags; the stable compiler accepts them this way.
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "run", target])
                .arg(&corpus)
                .arg(fuzz_dir.join("seeds").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}")),
        )?;
    }
    Ok(())
}
