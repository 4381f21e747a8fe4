//! `cargo xtask bench relay`: the relay binary and the `peerchat-load` generator as two processes
//! on loopback, the relay pinned to one core and the generator to the other.
//! `cargo xtask bench render`, `newcomer`, `virtual` and `attachments`: benchmark tests, `#[ignore]`d so that
//! `cargo test` does not run them, run here by name with `--ignored` and their reports collected.
//! `cargo xtask bench page`: the page-cache browser test's bytes for a first and a repeat visit.

use crate::process::{self, run};
use crate::setup::find_in_path;
use anyhow::{Context as _, Result};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// One load: members in the channel, total messages per second (0 for idle memory only).
struct Scenario {
    members: usize,
    publishers: usize,
    rate: u64,
    seconds: u64,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        members: 1000,
        publishers: 1,
        rate: 0,
        seconds: 0,
    },
    Scenario {
        members: 10,
        publishers: 10,
        rate: 100,
        seconds: 10,
    },
    Scenario {
        members: 100,
        publishers: 10,
        rate: 100,
        seconds: 10,
    },
    Scenario {
        members: 1000,
        publishers: 10,
        rate: 100,
        seconds: 10,
    },
];

/// What every benchmark's relay runs with: a fixed key (nothing is written to disk), room for
/// every generated member on loopback, and quiet logs.
pub(crate) const BENCH_RELAY_ENV: [(&str, &str); 3] = [
    (
        "PEERCHAT_SIGNING_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    ),
    ("PEERCHAT_CONNECTIONS_PER_ADDRESS", "100000"),
    ("RUST_LOG", "warn"),
];

/// Builds the release relay and `peerchat-load`; returns their folder.
pub(crate) fn build_release(root: &Path) -> Result<std::path::PathBuf> {
    run(process::cargo(root).args([
        "build",
        "--release",
        "--locked",
        "--package",
        "peerchat-server",
        "--bins",
    ]))?;
    Ok(root.join("target/release"))
}

pub(crate) fn relay(root: &Path, repeats: usize) -> Result<()> {
    let release = build_release(root)?;
    for scenario in SCENARIOS {
        for repeat in 1..=repeats {
            eprintln!(
                "xtask: bench relay: {} members, {} msg/s, run {repeat}/{repeats}",
                scenario.members, scenario.rate
            );
            run_scenario(&release, scenario)?;
        }
    }
    Ok(())
}

fn run_scenario(release: &Path, scenario: &Scenario) -> Result<()> {
    let port = free_loopback_port()?;
    let mut relay = pinned(0, &release.join("peerchat-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .envs(BENCH_RELAY_ENV)
        .env("PEERCHAT_MESSAGES_PER_SECOND", "100000")
        .env("PEERCHAT_MESSAGE_BURST", "100000")
        .env("PEERCHAT_FRAMES_PER_SECOND", "100000")
        .env("PEERCHAT_FRAME_BURST", "100000")
        .spawn()
        .context("cannot start the relay")?;
    let outcome = wait_until_listening(port).and_then(|()| {
        run(pinned(1, &release.join("peerchat-load"))
            .arg("--relay")
            .arg(format!("ws://127.0.0.1:{port}/ws"))
            .arg("--pid")
            .arg(relay_pid(&relay))
            .args(["--members", &scenario.members.to_string()])
            .args(["--publishers", &scenario.publishers.to_string()])
            .args(["--rate", &scenario.rate.to_string()])
            .args(["--seconds", &scenario.seconds.to_string()]))
    });
    stop(&mut relay);
    outcome
}

/// Runs `program` on one CPU with a high open-file limit (the hard limit where 65,536 is not
/// allowed), through `sh` so `ulimit` applies.
pub(crate) fn pinned(cpu: usize, program: &Path) -> Command {
    let mut command = Command::new("sh");
    let pin = if find_in_path("taskset").is_some() {
        format!("taskset -c {cpu} ")
    } else {
        String::new()
    };
    command
        .arg("-c")
        .arg(format!(
            "ulimit -n 65536 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec {pin}\"$0\" \"$@\""
        ))
        .arg(program);
    command
}

/// `sh` execs the relay, so the child's pid is the relay's.
fn relay_pid(relay: &Child) -> String {
    relay.id().to_string()
}

pub(crate) fn free_loopback_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn wait_until_listening(port: u16) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("the relay did not start listening on port {port}")
}

pub(crate) fn stop(relay: &mut Child) {
    let _ = Command::new("kill").arg(relay.id().to_string()).status();
    let _ = relay.wait();
}

/// A test of peerchat-server's, by its test binary (server/tests/<binary>/main.rs) and its path
/// in it.
struct BenchTest {
    binary: &'static str,
    name: &'static str,
}

/// The page-cache browser test: a correctness test (it asserts on the bytes) that prints them.
const PAGE_CACHE: BenchTest = BenchTest {
    binary: "browser",
    name: "page_cache::a_repeat_visit_revalidates_only_the_page_and_a_new_deploy_is_picked_up_on_the_next_load",
};
const NEWCOMER: BenchTest = BenchTest {
    binary: "browser",
    name: "history_newcomer::benchmark_a_newcomer_receiving_a_members_whole_history",
};
const RENDER: BenchTest = BenchTest {
    binary: "browser",
    name: "history_render::benchmark_drawing_a_thousand_cached_messages_after_a_reload",
};
const VIRTUAL_SYNC: BenchTest = BenchTest {
    binary: "virtual_clients",
    name: "throughput::benchmark_virtual_clients_pulling_a_seeded_history",
};
const VIRTUAL_ATTACHMENT: BenchTest = BenchTest {
    binary: "virtual_clients",
    name: "attachment_throughput::benchmark_a_virtual_client_fetching_a_file_from_another",
};
const BROWSER_ATTACHMENT: BenchTest = BenchTest {
    binary: "browser",
    name: "attachments::benchmark_a_browser_fetching_a_file_from_another",
};
const HISTORY_BESIDE_TRANSFER: BenchTest = BenchTest {
    binary: "virtual_clients",
    name: "attachment_throughput::benchmark_history_crossing_a_link_beside_a_large_transfer",
};
const PHOTO_SHOWN: BenchTest = BenchTest {
    binary: "browser",
    name: "attachments::benchmark_a_photo_shown_first_as_its_preview_then_whole",
};
const BARE_DATA_CHANNEL: BenchTest = BenchTest {
    binary: "browser",
    name: "attachments::benchmark_a_bare_data_channel_between_two_browsers",
};
const VIRTUAL_TO_BROWSER_ATTACHMENT: BenchTest = BenchTest {
    binary: "virtual_clients",
    name: "chromium::benchmark_a_browser_fetching_a_file_from_a_virtual_client",
};
const VIRTUAL_TO_BROWSER: BenchTest = BenchTest {
    binary: "virtual_clients",
    name: "chromium::benchmark_a_browser_newcomer_receiving_a_virtual_clients_seeded_history",
};

/// `cargo test` running `test` alone, ignored or not, with its output shown (`--release` for a
/// release build).
fn test_command(root: &Path, test: &BenchTest, profile: &[&str]) -> Command {
    let mut command = process::cargo(root);
    command
        .args(["test", "--locked", "--package", "peerchat-server"])
        .args(profile)
        .args(["--test", test.binary, "--", test.name])
        .args(["--exact", "--include-ignored", "--nocapture"]);
    command
}

/// Runs the page-cache browser test and reports the bytes of a first and a repeat visit.
pub(crate) fn page(root: &Path) -> Result<()> {
    let output = process::output_of(&mut test_command(root, &PAGE_CACHE, &[]))
        .context("the page-cache test failed")?;
    let line =
        report_line(&output, "page bytes:").context("the page-cache test printed no bytes")?;
    eprintln!("xtask: {line}");
    Ok(())
}

/// The report a test printed, starting at `label` as a word of its own (libtest may have
/// printed the test's name, e.g. `history_newcomer::…`, before it on the same line).
fn report_line<'a>(output: &'a str, label: &str) -> Option<&'a str> {
    output.lines().find_map(|line| {
        line.match_indices(label)
            .find(|(start, _)| {
                line[..*start]
                    .chars()
                    .next_back()
                    .is_none_or(char::is_whitespace)
            })
            .map(|(start, _)| &line[start..])
    })
}

/// Runs the newcomer browser test `repeats` times with `messages` messages and reports each
/// run's times and the median of the whole transfer.
pub(crate) fn newcomer(root: &Path, messages: usize, repeats: usize) -> Result<()> {
    let mut totals = Vec::new();
    for run_number in 1..=repeats {
        let output = process::output_of(
            test_command(root, &NEWCOMER, &[])
                .env("PEERCHAT_NEWCOMER_MESSAGES", messages.to_string()),
        )
        .context("the newcomer benchmark failed")?;
        let line =
            report_line(&output, "newcomer:").context("the newcomer test printed no timings")?;
        eprintln!("xtask: run {run_number}: {line}");
        let total: f64 = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("online_to_all_stored="))
            .and_then(|value| value.parse().ok())
            .context("no online_to_all_stored in the report")?;
        totals.push(total);
    }
    totals.sort_by(f64::total_cmp);
    eprintln!(
        "xtask: newcomer with {messages} messages: median {:.0} ms from online to all stored ({} runs)",
        totals[totals.len() / 2],
        totals.len()
    );
    Ok(())
}

/// Runs the browser benchmark that reloads a page holding 1,000 cached messages `repeats` times
/// and prints each run's timings and their medians.
pub(crate) fn render(root: &Path, repeats: usize) -> Result<()> {
    let mut runs: Vec<Vec<(String, f64)>> = Vec::new();
    for run_number in 1..=repeats {
        let output = process::output_of(&mut test_command(root, &RENDER, &[]))
            .context("the history-render benchmark failed")?;
        let line = report_line(&output, "history render:")
            .context("the history-render test printed no timings")?;
        eprintln!("xtask: run {run_number}: {line}");
        let timings: Vec<(String, f64)> = line
            .split_whitespace()
            .filter_map(|word| word.split_once('='))
            .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
            .collect();
        runs.push(timings);
    }
    let names: Vec<String> = runs
        .first()
        .into_iter()
        .flatten()
        .map(|(name, _)| name.clone())
        .collect();
    for name in names {
        let mut values: Vec<f64> = runs
            .iter()
            .flatten()
            .filter(|(run_name, _)| *run_name == name)
            .map(|(_, value)| *value)
            .collect();
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        eprintln!(
            "xtask: {name}: median {median:.1} ms after navigation start ({} runs)",
            values.len()
        );
    }
    Ok(())
}

/// Runs the virtual-client benchmarks with `messages` messages (release build: the virtual
/// client is a native program) and prints their reports.
pub(crate) fn virtual_clients(root: &Path, messages: usize) -> Result<()> {
    for (test, variable, label) in [
        (&VIRTUAL_SYNC, "PEERCHAT_VIRTUAL_MESSAGES", "virtual sync:"),
        (
            &VIRTUAL_TO_BROWSER,
            "PEERCHAT_VIRTUAL_TO_BROWSER_MESSAGES",
            "virtual to browser:",
        ),
    ] {
        let output = process::output_of(
            test_command(root, test, &["--release"]).env(variable, messages.to_string()),
        )
        .with_context(|| format!("the benchmark {} failed", test.name))?;
        let line = report_line(&output, label)
            .with_context(|| format!("the benchmark {} printed no report", test.name))?;
        eprintln!("xtask: {line}");
    }
    Ok(())
}

/// Runs the attachment benchmarks with a file of `megabytes` MiB, and the 5 MB photo's, in a
/// release build with the page's bundle as last built, and prints their reports.
pub(crate) fn attachments(root: &Path, megabytes: usize) -> Result<()> {
    for (test, label) in [
        (&VIRTUAL_ATTACHMENT, "virtual to virtual:"),
        (&VIRTUAL_TO_BROWSER_ATTACHMENT, "virtual to browser (file):"),
        (&BROWSER_ATTACHMENT, "browser to browser:"),
        (&BARE_DATA_CHANNEL, "bare data channel:"),
        (&PHOTO_SHOWN, "photo:"),
        (&HISTORY_BESIDE_TRANSFER, "history beside a transfer:"),
    ] {
        let output = process::output_of(
            test_command(root, test, &["--release"])
                .env("PEERCHAT_ATTACHMENT_MEGABYTES", megabytes.to_string()),
        )
        .with_context(|| format!("the benchmark {} failed", test.name))?;
        let line = report_line(&output, label)
            .with_context(|| format!("the benchmark {} printed no report", test.name))?;
        eprintln!("xtask: {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_found_after_the_test_name_that_contains_its_label() {
        let output = "running 1 test\n\
            test history_newcomer::benchmark_x ... newcomer: messages=100 online_to_all_stored=388\n";
        assert_eq!(
            report_line(output, "newcomer:"),
            Some("newcomer: messages=100 online_to_all_stored=388")
        );
        assert_eq!(
            report_line("page bytes: first_visit=1", "page bytes:"),
            Some("page bytes: first_visit=1")
        );
        assert_eq!(
            report_line("test history_newcomer::x ... ok", "newcomer:"),
            None
        );
    }
}
