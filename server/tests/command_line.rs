//! The `peerchat-server` binary: invite links from the command line, and `--help`.

mod support;

use peerchat_server::{key_file, Admission};
use std::process::Command;
use support::{config, Credentials, TestClient, TestRelay};

fn relay_command(key_path: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerchat-server"));
    command.env_clear().arg("--key-file").arg(key_path);
    command
}

#[tokio::test]
async fn invite_command_prints_a_join_link_that_the_relay_accepts() {
    let data_dir = tempfile::tempdir().unwrap();
    let key_path = data_dir.path().join("relay.key");
    let output = relay_command(&key_path)
        .args([
            "--public-url",
            "https://chat.example.org/",
            "invite",
            "--uses",
            "2",
            "--ttl",
            "1h",
        ])
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

    let (key, created) = key_file::load_or_create(&key_path).unwrap();
    assert!(!created, "the invite command created the relay's key file");
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
    ] {
        assert!(
            help.contains(variable),
            "--help does not mention {variable}:\n{help}"
        );
    }
}
