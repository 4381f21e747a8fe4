//! The `peerchat-virtual` binary as an operator runs it: `--count` clients with keys made on
//! the first run, admitted by an invite of role `virtual`, and back after a restart with the
//! same keys and the certificates the relay gave them (the invite is used up by then).

use peerchat_server::{invites, Admission, RelayConfig};
use peerchat_shared::identity::SecretKey;
use peerchat_shared::membership::Role;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const CLIENTS: usize = 3;
/// Guards against a hung test; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// The relay's `/metrics` text, over a plain HTTP/1.0 request.
async fn metrics(address: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

async fn wait_for_virtual_sessions(address: std::net::SocketAddr, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    let line = format!("peerchat_virtual_clients_online {count}\n");
    loop {
        let text = metrics(address).await;
        if text.contains(&line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {line:?} in the relay's metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_virtual_clients(relay: std::net::SocketAddr, dir: &Path, invite: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerchat-virtual"));
    command
        .env_clear()
        .arg("--relay")
        .arg(format!("ws://{relay}/ws"))
        .args(["--count", &CLIENTS.to_string()])
        .arg("--key-dir")
        .arg(dir.join("keys"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--webrtc-udp", "127.0.0.1:0"]);
    if let Some(invite) = invite {
        command.arg("--invite").arg(invite);
    }
    command.spawn().unwrap()
}

/// Sends SIGTERM, as a service manager does, and waits for the process to end.
fn terminate(mut child: Child) -> ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn count_clients_log_in_with_an_invite_then_again_with_their_own_keys_and_certificates() {
    let config = RelayConfig::new(SecretKey::from_seed([1; 32]), Admission::InviteOnly);
    let invite = invites::mint(
        &config.signing_key,
        Role::Virtual,
        CLIENTS as u32,
        Duration::from_secs(600),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(peerchat_server::run(listener, config, shutdown.clone()));
    let dir = tempfile::tempdir().unwrap();

    let first_run = start_virtual_clients(address, dir.path(), Some(&invite.to_string()));
    wait_for_virtual_sessions(address, CLIENTS).await;
    assert!(terminate(first_run).success(), "SIGTERM ends it cleanly");
    wait_for_virtual_sessions(address, 0).await;
    let mut files: Vec<String> = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .chain(std::fs::read_dir(dir.path().join("data")).unwrap())
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let key_of = |n: usize| std::fs::read(dir.path().join(format!("keys/virtual-{n}.key")));
    let first_keys: Vec<Vec<u8>> = (1..=CLIENTS).map(|n| key_of(n).unwrap()).collect();
    for n in 1..=CLIENTS {
        for file in [
            format!("virtual-{n}.key"),
            format!("virtual-{n}.certificate"),
            format!("virtual-{n}.redb"),
        ] {
            assert!(files.contains(&file), "{file} missing from {files:?}");
        }
    }

    // The invite's uses are spent: logging in again needs the saved certificates.
    let second_run = start_virtual_clients(address, dir.path(), None);
    wait_for_virtual_sessions(address, CLIENTS).await;
    assert!(terminate(second_run).success());
    let second_keys: Vec<Vec<u8>> = (1..=CLIENTS).map(|n| key_of(n).unwrap()).collect();
    assert_eq!(first_keys, second_keys, "keys are made once and kept");
    shutdown.cancel();
    relay.await.unwrap().unwrap();
}
