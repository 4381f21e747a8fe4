//! The `peerchat-virtual` command as an operator runs it: `--count` clients with keys made on
//! the first run, admitted by an invite of role `virtual`, and back after a restart with the
//! same keys and the certificates the relay gave them (the invite is used up by then).
//!
//! The command runs in a process of its own, stopped by SIGTERM as a service manager stops it.
//! That process is this test binary again, running [`peerchat_virtual_command`], which runs
//! the binary's `main` (`peerchat_virtual::cli::main`): Cargo builds only this package's
//! binaries for its tests, and the virtual client's crate no longer depends on the relay's.

use peerchat_server::{invites, Admission, RelayConfig};
use peerchat_shared::identity::SecretKey;
use peerchat_shared::membership::Role;
use std::ffi::OsString;
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

/// Where the parent hands [`peerchat_virtual_command`] its command line, one argument a line.
const ARGUMENTS: &str = "PEERCHAT_TEST_VIRTUAL_COMMAND";

/// Not a test of its own: `peerchat-virtual` with the arguments in [`ARGUMENTS`], in the process
/// that [`start_virtual_clients`] starts. Without them (any other run) it does nothing.
#[test]
#[ignore = "the peerchat-virtual process of the test below; it runs only as that"]
fn peerchat_virtual_command() {
    let Some(arguments) = std::env::var_os(ARGUMENTS) else {
        return;
    };
    let arguments = arguments.into_string().expect("UTF-8 arguments");
    let command_line = std::iter::once("peerchat-virtual")
        .chain(arguments.lines())
        .map(OsString::from);
    peerchat_virtual::cli::main(command_line).unwrap();
}

/// `peerchat-virtual` as its own process, with an empty environment as a service manager gives
/// it (but for its command line).
fn start_virtual_clients(relay: std::net::SocketAddr, dir: &Path, invite: Option<&str>) -> Child {
    let mut arguments = vec![
        "--relay".to_owned(),
        format!("ws://{relay}/ws"),
        "--count".to_owned(),
        CLIENTS.to_string(),
        "--key-dir".to_owned(),
        dir.join("keys").display().to_string(),
        "--data-dir".to_owned(),
        dir.join("data").display().to_string(),
        "--webrtc-udp".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    if let Some(invite) = invite {
        arguments.extend(["--invite".to_owned(), invite.to_owned()]);
    }
    // This test binary runs `peerchat_virtual_command` alone: the test's name without the crate.
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, module)| module);
    Command::new(std::env::current_exe().unwrap())
        .env_clear()
        .env(ARGUMENTS, arguments.join("\n"))
        .arg(format!("{module}::peerchat_virtual_command"))
        .args(["--exact", "--include-ignored", "--nocapture"])
        // Its logs (stderr) show; libtest's lines about the one test (stdout) would only confuse
        // this run's own.
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
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
