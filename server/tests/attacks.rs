//! What strangers send: attacks on the relay binary over real loopback sockets, each bounded in
//! count and time, each checking the relay's own peak memory against what a 256 MB machine
//! can spare (docs/protocol.md §8.1).

mod support;

use std::process::Command;
use support::{free_loopback_address, RelayProcess};
use tokio::io::AsyncWriteExt as _;

/// The most memory the relay may ever hold, whatever a stranger sends.
const PEAK_BYTES: u64 = 96 * 1024 * 1024;

fn relay_binary(work_dir: &std::path::Path, address: std::net::SocketAddr) -> RelayProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerchat-server"));
    command
        .env_clear()
        .current_dir(work_dir)
        .args(["--listen", &address.to_string()]);
    RelayProcess::start(&mut command, address)
}

/// A WebSocket connection from the loopback address `127.0.0.<host>` (one stranger each) that
/// has seen the relay's challenge and will not log in.
async fn unauthenticated_socket(address: std::net::SocketAddr, host: u8) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, host], 0).into()).unwrap();
    let stream = socket.connect(address).await.unwrap();
    let (socket, _) = tokio_tungstenite::client_async(format!("ws://{address}/ws"), stream)
        .await
        .unwrap();
    socket.into_inner()
}

/// Sends the header of one masked text frame claiming `length` bytes, then its payload in
/// chunks until the relay stops reading or `length` bytes are sent.
async fn send_huge_frame(mut socket: tokio::net::TcpStream, length: u64) {
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    if socket.write_all(&header).await.is_err() {
        return;
    }
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < length {
        let write = socket.write_all(&chunk);
        match tokio::time::timeout(std::time::Duration::from_secs(5), write).await {
            Ok(Ok(())) => sent += chunk.len() as u64,
            // Refused, or no longer read: either way the relay holds none of it.
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_frames_before_login_are_refused_at_their_header() {
    let work_dir = tempfile::tempdir().unwrap();
    let address = free_loopback_address();
    let relay = relay_binary(work_dir.path(), address);
    let mut attackers = Vec::new();
    for host in 2..34 {
        let socket = unauthenticated_socket(address, host).await;
        attackers.push(tokio::spawn(send_huge_frame(socket, 16 * 1024 * 1024)));
    }
    for attacker in attackers {
        attacker.await.unwrap();
    }
    let peak = relay.peak_memory_bytes();
    assert!(
        peak < PEAK_BYTES,
        "32 unauthenticated sockets sending 16 MiB frames: peak {} MiB",
        peak / (1024 * 1024)
    );
    relay.stop();
}
