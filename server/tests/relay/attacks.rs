//! What strangers send: attacks on the relay binary over real loopback sockets, each bounded in
//! count and time, each checking the relay's own peak memory against what a 256 MB machine
//! can spare (docs/protocol.md §8.1).

use crate::support;

use futures_util::StreamExt as _;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::frames::ClientToRelay;
use peerchat_shared::limits::MAX_TEXT_BYTES;
use peerchat_shared::message::{ClientNonce, Draft, MessageBody};
use std::process::Command;
use support::{Credentials, RelayProcess, TestClient};
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::Message;

/// The most memory the relay may ever hold, whatever a stranger sends.
const PEAK_BYTES: u64 = 96 * 1024 * 1024;

/// The relay binary on an ephemeral loopback port.
fn relay_binary(work_dir: &std::path::Path, options: &[&str]) -> RelayProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerchat-server"));
    command
        .env_clear()
        .current_dir(work_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(options);
    RelayProcess::start(&mut command)
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
    let relay = relay_binary(work_dir.path(), &[]);
    let address = relay.address;
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

/// Logs in with the key of `seed` and posts `count` texts of the largest size to a channel of its
/// own, in batches, each waited for with a `ping` (the acks are counted, not decoded).
async fn post_largest_texts(address: std::net::SocketAddr, seed: u8, count: usize) {
    const BATCH: usize = 100;
    let (mut poster, welcome) = TestClient::login_to(address, seed, Credentials::None).await;
    welcome.unwrap();
    let channel = format!("quiet-{seed}");
    poster.join(&channel).await;
    let text = "x".repeat(MAX_TEXT_BYTES);
    for batch in (0..count).step_by(BATCH) {
        let sends = batch..(batch + BATCH).min(count);
        let expected = sends.len();
        for index in sends {
            let draft = Draft::sign(
                &poster.key,
                &poster.relay,
                ChannelName::new(&channel).unwrap(),
                ClientNonce((index as u128).to_be_bytes()),
                MessageBody::text(text.clone()),
            );
            poster.send(&ClientToRelay::Send { draft }).await;
        }
        poster.send(&ClientToRelay::Ping).await;
        let mut acks = 0;
        loop {
            match poster.socket.next().await {
                Some(Ok(Message::Text(frame))) if frame.len() > MAX_TEXT_BYTES => acks += 1,
                Some(Ok(Message::Text(frame))) if frame.as_str() == r#"{"type":"pong"}"# => break,
                Some(Ok(Message::Text(frame))) => panic!("unexpected {frame}"),
                Some(Ok(_)) => {}
                other => panic!("the relay closed on poster {seed}: {other:?}"),
            }
        }
        assert_eq!(acks, expected);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_resend_memory_keeps_no_message_bodies() {
    let work_dir = tempfile::tempdir().unwrap();
    // An operator who lets members post as fast as they like: 20,000 of the largest texts,
    // each remembered for resends, in channels nobody else is in.
    let unthrottled = [
        "--messages-per-second",
        "100000",
        "--message-burst",
        "100000",
        "--frames-per-second",
        "100000",
        "--frame-burst",
        "100000",
    ];
    let relay = relay_binary(work_dir.path(), &unthrottled);
    let address = relay.address;
    let posters: Vec<_> = (1..=8)
        .map(|seed| tokio::spawn(post_largest_texts(address, seed, 2_500)))
        .collect();
    for poster in posters {
        poster.await.unwrap();
    }
    let peak = relay.peak_memory_bytes();
    assert!(
        peak < PEAK_BYTES,
        "20,000 remembered sends of 8 KiB: peak {} MiB",
        peak / (1024 * 1024)
    );
    relay.stop();
}

/// Sends an HTTP request head that never ends, up to `bytes` of header lines, from the
/// loopback address `127.0.0.<host>`, and keeps the connection until the relay drops it.
async fn half_sent_request(
    address: std::net::SocketAddr,
    host: u8,
    bytes: usize,
) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, host], 0).into()).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let line = format!("X-Padding: {}\r\n", "x".repeat(1000));
    let mut head = String::from("GET / HTTP/1.1\r\nHost: relay\r\n");
    while head.len() < bytes {
        head.push_str(&line);
    }
    let write = stream.write_all(head.as_bytes());
    // Refused or no longer read: either way the relay holds none of the rest.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), write).await;
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_hold_little_and_do_not_delay_shutdown() {
    let work_dir = tempfile::tempdir().unwrap();
    let relay = relay_binary(work_dir.path(), &[]);
    let address = relay.address;
    let mut held = Vec::new();
    for index in 0..600 {
        let host = 2 + u8::try_from(index % 200).unwrap();
        held.push(tokio::spawn(half_sent_request(address, host, 400 * 1024)));
    }
    let mut streams = Vec::new();
    for stream in held {
        streams.push(stream.await.unwrap());
    }
    let peak = relay.peak_memory_bytes();
    assert!(
        peak < PEAK_BYTES,
        "600 half-sent 400 KiB request heads: peak {} MiB",
        peak / (1024 * 1024)
    );
    // Members still get in meanwhile.
    let (_member, welcome) = TestClient::login_to(address, 9, Credentials::None).await;
    welcome.unwrap();
    let stopping = std::time::Instant::now();
    relay.stop();
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(15),
        "SIGTERM took {:?} with half-sent requests open",
        stopping.elapsed()
    );
    drop(streams);
}
