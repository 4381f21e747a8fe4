//! The commands a newcomer and an image build type, run exactly as README.md and the Dockerfile
//! write them (read from those files, so the two cannot drift): the Dockerfile's `cargo xtask`
//! commands build the relay it ships, and the README's first command serves the page on which,
//! in Chromium, a member comes online and chats. `.ci/run` runs the README's second command.

use crate::browser;

use browser::{Browser, ChromeDriver};
use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A build from scratch on this machine's two cores takes minutes; this only stops a hang.
const BUILD_PATIENCE: Duration = Duration::from_secs(45 * 60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ is in the workspace")
        .to_path_buf()
}

fn read(file: &str) -> String {
    std::fs::read_to_string(workspace_root().join(file)).unwrap()
}

/// The commands of README.md's first `sh` block, one per line, comments dropped.
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md opens with a sh block");
    block
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim().to_owned())
        .filter(|command| !command.is_empty())
        .collect()
}

/// The Dockerfile's instructions with continuation lines joined, each as (keyword, arguments).
fn dockerfile_instructions() -> Vec<(String, String)> {
    let dockerfile = read("Dockerfile").replace("\\\n", " ");
    dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (keyword, arguments) = line.split_once(' ')?;
            Some((keyword.to_owned(), arguments.trim().to_owned()))
        })
        .collect()
}

/// A shell running `command` in the workspace as a user would, without what `cargo test` adds
/// to the environment, in a process group of its own (so that it can be stopped whole).
fn as_typed(command: &str) -> Command {
    let mut shell = Command::new("sh");
    shell
        .args(["-c", command])
        .current_dir(workspace_root())
        .process_group(0);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "CARGO" || (name.starts_with("CARGO_") && name != "CARGO_HOME") {
            shell.env_remove(name.as_ref());
        }
    }
    shell
}

/// Runs `command` to completion; panics if it fails or outlasts [`BUILD_PATIENCE`].
fn run_to_completion(command: &str) {
    eprintln!("first run: {command}");
    let mut child = as_typed(command).spawn().unwrap();
    let deadline = std::time::Instant::now() + BUILD_PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "`{command}` failed: {status}");
            return;
        }
        if std::time::Instant::now() > deadline {
            stop_group(&child);
            panic!("`{command}` did not finish in {BUILD_PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn stop_group(child: &std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .status();
}

/// The README's first command, started with the relay on an ephemeral loopback port and its key
/// file in `data`; returns the process and the URL it says to open.
fn serve_as_the_readme_says(data: &Path) -> (std::process::Child, String) {
    let command = readme_commands()
        .into_iter()
        .next()
        .expect("the README's first command");
    assert_eq!(command, "cargo xtask serve");
    eprintln!("first run: {command}");
    let mut child = as_typed(&command)
        .env("PEERCHAT_LISTEN", "127.0.0.1:0")
        .env("PEERCHAT_KEY_FILE", data.join("relay.key"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (found, url) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("  {line}");
            if let Some(url) = line
                .split_once("open ")
                .and_then(|(_, rest)| rest.strip_suffix(" in a browser"))
            {
                let _ = found.send(url.to_owned());
            }
        }
    });
    match url.recv_timeout(BUILD_PATIENCE) {
        Ok(url) => (child, url),
        Err(_) => {
            stop_group(&child);
            panic!("`{command}` never said which address to open");
        }
    }
}

#[test]
fn ci_runs_the_readmes_test_command() {
    let test_command = readme_commands()
        .into_iter()
        .nth(1)
        .expect("the README's second command");
    assert_eq!(test_command, "cargo xtask test");
    let ci = read(".ci/run");
    let last = ci
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap();
    assert_eq!(last.trim(), format!("exec {test_command}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dockerfile_builds_the_relay_and_the_readmes_first_command_serves_a_page_to_chat_on() {
    if browser::run_sealed() {
        return;
    }
    let instructions = dockerfile_instructions();
    let xtask_runs: Vec<&str> = instructions
        .iter()
        .filter(|(keyword, arguments)| keyword == "RUN" && arguments.starts_with("cargo xtask "))
        .map(|(_, arguments)| arguments.as_str())
        .collect();
    assert!(
        xtask_runs.contains(&"cargo xtask dist"),
        "the image is built by `cargo xtask dist`: {xtask_runs:?}"
    );
    for command in xtask_runs {
        run_to_completion(command);
    }
    let shipped = instructions
        .iter()
        .filter(|(keyword, arguments)| keyword == "COPY" && arguments.starts_with("--from=build "))
        .map(|(_, arguments)| arguments.split_whitespace().nth(1).unwrap())
        .find(|source| source.ends_with("/peerchat-server"))
        .expect("the image copies the relay out of the build stage");
    let built = workspace_root().join(shipped.strip_prefix("/src/").expect("WORKDIR /src"));
    let help = Command::new(&built).arg("--help").output().unwrap();
    assert!(help.status.success(), "{} runs", built.display());

    let data = tempfile::tempdir().unwrap();
    let (mut serving, url) = serve_as_the_readme_says(data.path());
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    let driver = ChromeDriver::start().await;
    let member = Browser::open(&driver, &url).await;
    member.wait_until_online().await;
    member.send_message("hello from a fresh clone").await;
    member
        .wait_until(
            "the message to be sent",
            "const last = [...document.querySelectorAll('#messages > li')].at(-1); \
             return last?.dataset.state === 'sent' && last.querySelector('.text').textContent === 'hello from a fresh clone'",
        )
        .await;
    member.close().await;
    stop_group(&serving);
    serving.wait().unwrap();
    assert!(
        data.path().join("relay.key").exists(),
        "the relay used the key file it was given"
    );
}
