//! The `peerchat-server` binary: invite links from the command line, `--help`, its files, a
//! restart, SIGTERM, and (with the feature `virtual-clients`) the virtual clients it runs in its
//! process, also with fly.toml's environment.

use crate::support;

use peerchat_server::Admission;
use peerchat_shared::key_file;
use std::process::Command;
use support::{config, Credentials, RelayProcess, TestClient, TestRelay};

fn relay_command(key_path: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerchat-server"));
    command.env_clear().arg("--key-file").arg(key_path);
    command
}

#[tokio::test]
async fn the_documented_invite_command_prints_a_join_link_that_the_relay_accepts() {
    let data_dir = tempfile::tempdir().unwrap();
    let key_path = data_dir.path().join("relay.key");
    let (key, _) = key_file::load_or_create(&key_path, rand::random).unwrap();
    // As docs/operating.md writes it, with the relay's key settings.
    let output = relay_command(&key_path)
        .args(["invite", "--uses", "5", "--ttl", "7d"])
        .args(["--public-url", "https://chat.example.org/"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let link = String::from_utf8(output.stdout).unwrap();
    let token = link
        .trim()
        .strip_prefix("https://chat.example.org/#invite=")
        .expect("a join link")
        .to_owned();

    let mut relay_config = config(Admission::InviteOnly);
    relay_config.signing_key = key;
    let relay = TestRelay::start(relay_config).await;
    let invite = token.parse().unwrap();
    let (client, accepted) = TestClient::login(&relay, 7, Credentials::Invite(invite)).await;
    assert_eq!(accepted, Ok(()));
    assert_eq!(client.role, Some(peerchat_shared::membership::Role::Member));
    relay.stop().await;
}

#[test]
fn the_invite_command_refuses_to_sign_with_a_key_no_relay_has() {
    let data_dir = tempfile::tempdir().unwrap();
    let key_path = data_dir.path().join("relay.key");
    let output = relay_command(&key_path).args(["invite"]).output().unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("relay's own key") && error.contains(&key_path.display().to_string()),
        "{error}"
    );
    assert!(!key_path.exists(), "no new key was made");
}

#[test]
fn help_lists_the_relay_limits_under_their_own_heading() {
    let output = Command::new(env!("CARGO_BIN_EXE_peerchat-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    let heading_before = |option: &str| {
        let at = help
            .find(option)
            .unwrap_or_else(|| panic!("{option} in --help"));
        help[..at]
            .lines()
            .rev()
            .find(|line| !line.starts_with(' ') && line.ends_with(':'))
            .unwrap_or_default()
            .to_owned()
    };
    for limit in [
        "--max-sessions",
        "--messages-per-second",
        "--send-queue-frames",
    ] {
        assert_eq!(heading_before(limit), "Relay limits:", "{limit}");
    }
    if cfg!(feature = "virtual-clients") {
        for tuning in ["--cache-hours", "--upload-kbps"] {
            assert_eq!(heading_before(tuning), "Virtual clients:", "{tuning}");
        }
    }
    assert_eq!(heading_before("--listen"), "Options:");
}

#[test]
fn help_documents_every_option_and_its_environment_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_peerchat-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "PEERCHAT_LISTEN",
        "PEERCHAT_SIGNING_KEY",
        "PEERCHAT_KEY_FILE",
        "PEERCHAT_ADMISSION",
        "PEERCHAT_CHANNELS",
        "PEERCHAT_BANNED",
        "PEERCHAT_OWNERS",
        "PEERCHAT_ICE_SERVERS",
        "PEERCHAT_WEB_DIR",
        "PEERCHAT_PUBLIC_URL",
        "PEERCHAT_MAX_SESSIONS",
        "PEERCHAT_CONNECTIONS_PER_KEY",
        "PEERCHAT_CONNECTIONS_PER_ADDRESS",
        "PEERCHAT_MESSAGES_PER_SECOND",
        "PEERCHAT_MESSAGE_BURST",
        "PEERCHAT_FRAMES_PER_SECOND",
        "PEERCHAT_FRAME_BURST",
        "PEERCHAT_SEND_QUEUE_FRAMES",
        "PEERCHAT_VIRTUAL_CLIENT_KEYS",
        "PEERCHAT_VIRTUAL_CLIENTS",
    ]
    .into_iter()
    .chain(IN_PROCESS_VIRTUAL_CLIENT_VARIABLES)
    {
        assert!(
            help.contains(variable),
            "--help does not mention {variable}:\n{help}"
        );
    }
}

/// The options of the virtual clients in the relay's process, which only a relay built with
/// them has.
#[cfg(feature = "virtual-clients")]
const IN_PROCESS_VIRTUAL_CLIENT_VARIABLES: [&str; 4] = [
    "PEERCHAT_VIRTUAL_CLIENT_DIR",
    "PEERCHAT_VIRTUAL_HOURS",
    "PEERCHAT_VIRTUAL_MEGABYTES",
    "PEERCHAT_VIRTUAL_KBPS",
];
#[cfg(not(feature = "virtual-clients"))]
const IN_PROCESS_VIRTUAL_CLIENT_VARIABLES: [&str; 0] = [];

/// A relay built without the feature `virtual-clients` refuses to start any, saying why.
#[cfg(not(feature = "virtual-clients"))]
#[test]
fn a_relay_built_without_virtual_clients_refuses_to_run_them() {
    let work_dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_peerchat-server"))
        .env_clear()
        .current_dir(work_dir.path())
        .args(["--listen", "127.0.0.1:0", "--virtual-clients", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("built without the cargo feature `virtual-clients`"),
        "{stderr}"
    );
    assert_eq!(
        files_below(work_dir.path()),
        Vec::<std::path::PathBuf>::new(),
        "refused before it wrote a key"
    );
}

/// Lists every file below `dir`, relative to it.
fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(
                files_below(&path)
                    .into_iter()
                    .map(|file| path.strip_prefix(dir).unwrap().join(file)),
            );
        } else {
            files.push(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    files
}

/// The relay binary started in `work_dir` (so its default key file lands there) on `address`.
fn start_relay_in(work_dir: &std::path::Path, address: &str, args: &[&str]) -> RelayProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerchat-server"));
    command
        .env_clear()
        .current_dir(work_dir)
        .args(["--listen", address])
        .args(args);
    RelayProcess::start(&mut command)
}

/// Posts `text` to `general` and returns the id the relay stamped on it.
async fn post(member: &mut TestClient, nonce: u8, text: &str) -> peerchat_shared::ids::MessageId {
    use peerchat_shared::frames::{ClientToRelay, RelayToClient};
    member
        .send(&ClientToRelay::Send {
            draft: member.draft("general", nonce, text),
        })
        .await;
    match member
        .next_matching(|frame| matches!(frame, RelayToClient::Ack { .. }))
        .await
    {
        RelayToClient::Ack { envelope } => envelope.id,
        _ => unreachable!("next_matching returns an ack"),
    }
}

#[tokio::test]
async fn the_relay_binary_writes_nothing_but_its_key_file_and_members_return_after_a_restart() {
    let work_dir = tempfile::tempdir().unwrap();
    let invite_only = ["--admission", "invite-only"];
    let relay = start_relay_in(work_dir.path(), "127.0.0.1:0", &invite_only);
    let address = relay.address;
    let link = Command::new(env!("CARGO_BIN_EXE_peerchat-server"))
        .env_clear()
        .current_dir(work_dir.path())
        .args(["invite", "--uses", "1"])
        .output()
        .unwrap();
    assert!(link.status.success());
    let invite = String::from_utf8(link.stdout).unwrap();
    let invite = invite
        .trim()
        .split_once("#invite=")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let (mut alice, accepted) = TestClient::login_to(address, 1, Credentials::Invite(invite)).await;
    assert_eq!(accepted, Ok(()));
    alice.join("general").await;
    let first = post(&mut alice, 1, "this must not be stored").await;
    relay.stop();
    let only_the_key = vec![std::path::PathBuf::from("peerchat-data/relay.key")];
    assert_eq!(files_below(work_dir.path()), only_the_key);

    // A new process with the same key file: the member's certificate admits them again (the
    // invite is used up), and ids keep growing.
    let relay = start_relay_in(work_dir.path(), &address.to_string(), &invite_only);
    let certificate = alice.certificate.clone().unwrap();
    let (mut back, accepted) =
        TestClient::login_to(address, 1, Credentials::Certificate(certificate)).await;
    assert_eq!(accepted, Ok(()));
    back.join("general").await;
    assert!(post(&mut back, 2, "back again").await > first);
    drop(back);
    relay.stop();
    assert_eq!(files_below(work_dir.path()), only_the_key);
}

#[cfg(feature = "virtual-clients")]
#[tokio::test]
async fn the_relay_runs_virtual_clients_in_its_process_and_reports_them_in_its_metrics() {
    let work_dir = tempfile::tempdir().unwrap();
    let relay = start_relay_in(
        work_dir.path(),
        "127.0.0.1:0",
        &["--virtual-clients", "2", "--webrtc-udp", "127.0.0.1:0"],
    );
    let metrics_url = format!("http://{}/metrics", relay.address);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(&metrics_url).await {
            let metrics = response.text().await.unwrap();
            if metrics.contains("peerchat_virtual_clients_online 2\n") {
                assert!(metrics.contains("peerchat_virtual_client_cached_messages 0"));
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the in-process virtual clients never came online"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let keys = work_dir.path().join("peerchat-data/virtual");
    for file in [
        "virtual-1.key",
        "virtual-2.key",
        "virtual-1.redb",
        "virtual-2.redb",
    ] {
        assert!(keys.join(file).exists(), "{file} was not created");
    }
}

/// The environment fly.io gives the relay: the image's `ENV` (the Dockerfile's last stage)
/// overlaid with fly.toml's `[env]`, and where fly.toml mounts the volume.
#[cfg(feature = "virtual-clients")]
fn fly_environment() -> (Vec<(String, String)>, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile"))
        .unwrap()
        .replace("\\\n", " ");
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let mut environment: Vec<(String, String)> = last_stage
        .lines()
        .filter_map(|line| line.trim().strip_prefix("ENV "))
        .flat_map(|pairs| pairs.split_whitespace())
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("ENV NAME=value");
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let fly: toml::Table = std::fs::read_to_string(root.join("fly.toml"))
        .unwrap()
        .parse()
        .unwrap();
    for (name, value) in fly["env"].as_table().unwrap() {
        environment.retain(|(existing, _)| existing != name);
        environment.push((name.clone(), value.as_str().unwrap().to_owned()));
    }
    let volume = fly["mounts"]["destination"].as_str().unwrap().to_owned();
    (environment, volume)
}

/// fly.io stops the machine when idle: the archive must be on the volume to outlive that.
#[cfg(feature = "virtual-clients")]
#[tokio::test]
async fn on_fly_the_in_process_archive_keeps_its_cache_on_the_volume_across_a_restart() {
    let (environment, volume) = fly_environment();
    let setting = |name: &str| {
        environment
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    };
    assert!(setting("PEERCHAT_VIRTUAL_CLIENTS").is_some_and(|count| count != "0"));
    assert_eq!(
        setting("PEERCHAT_VIRTUAL_CLIENT_MEMORY_ONLY"),
        None,
        "the cache is kept in a file"
    );
    for kept in ["PEERCHAT_VIRTUAL_CLIENT_DIR", "PEERCHAT_KEY_FILE"] {
        assert!(
            setting(kept).is_some_and(|path| path.starts_with(&format!("{volume}/"))),
            "{kept} is on the volume"
        );
    }
    // The volume is a folder of this test's; every path fly's relay is given moves with it.
    let mounted = tempfile::tempdir().unwrap();
    let relay_command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_peerchat-server"));
        command.env_clear().current_dir(mounted.path());
        for (name, value) in &environment {
            let value = match value.strip_prefix(&volume) {
                Some(rest) => format!("{}{rest}", mounted.path().display()),
                None => value.clone(),
            };
            command.env(name, value);
        }
        command
            .env("PEERCHAT_LISTEN", "127.0.0.1:0")
            .env("PEERCHAT_VIRTUAL_UDP", "127.0.0.1:0");
        command
    };
    let metric_reaches = |address: std::net::SocketAddr, line: &'static str| {
        let metrics_url = format!("http://{address}/metrics");
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                if let Ok(response) = reqwest::get(&metrics_url).await {
                    if response
                        .text()
                        .await
                        .unwrap()
                        .contains(&format!("{line}\n"))
                    {
                        return;
                    }
                }
                assert!(std::time::Instant::now() < deadline, "never saw {line}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };

    let relay = RelayProcess::start(&mut relay_command());
    metric_reaches(relay.address, "peerchat_virtual_clients_online 1").await;
    let (mut ada, accepted) = TestClient::login_to(relay.address, 5, Credentials::None).await;
    assert_eq!(accepted, Ok(()));
    ada.join("general").await;
    for nonce in 1..=3 {
        post(&mut ada, nonce, "kept while nobody is here").await;
    }
    metric_reaches(relay.address, "peerchat_virtual_client_cached_messages 3").await;
    drop(ada);
    relay.stop();

    let relay = RelayProcess::start(&mut relay_command());
    metric_reaches(relay.address, "peerchat_virtual_clients_online 1").await;
    metric_reaches(relay.address, "peerchat_virtual_client_cached_messages 3").await;
    relay.stop();
}

/// Reads frames until the relay's `shutting_down` error; false if the connection ends first.
async fn told_shutting_down(mut member: TestClient) -> bool {
    use futures_util::StreamExt as _;
    use peerchat_shared::frames::{ErrorCode, RelayToClient};
    use tokio_tungstenite::tungstenite::Message;
    let wait = async {
        while let Some(Ok(message)) = member.socket.next().await {
            if let Message::Text(text) = message {
                if let Ok(RelayToClient::Error {
                    code: ErrorCode::ShuttingDown,
                    ..
                }) = peerchat_shared::codec::decode_relay_frame(text.as_str())
                {
                    return true;
                }
            }
        }
        false
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), wait)
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sigterm_the_relay_tells_every_session_before_it_exits() {
    let work_dir = tempfile::tempdir().unwrap();
    let relay = start_relay_in(
        work_dir.path(),
        "127.0.0.1:0",
        &["--connections-per-address", "200", "--max-sessions", "200"],
    );
    let address = relay.address;
    let mut members = Vec::new();
    for seed in 0..90u8 {
        let (mut member, accepted) = TestClient::login_to(address, seed, Credentials::None).await;
        assert_eq!(accepted, Ok(()));
        member.join("general").await;
        members.push(member);
    }
    let listening: Vec<_> = members
        .into_iter()
        .map(|member| tokio::spawn(told_shutting_down(member)))
        .collect();
    tokio::task::spawn_blocking(move || relay.stop())
        .await
        .unwrap();
    let mut told = 0;
    for member in listening {
        told += usize::from(member.await.unwrap());
    }
    assert_eq!(
        told, 90,
        "sessions told `shutting_down` before the relay exited"
    );
}
