//! A relay on an ephemeral loopback port and a protocol-speaking test client.
#![allow(dead_code)]

use futures_util::{SinkExt as _, StreamExt as _};
use peerchat_server::{run, Admission, RelayConfig};
use peerchat_shared::channel::ChannelName;
use peerchat_shared::codec::{decode_relay_frame, encode};
use peerchat_shared::frames::{
    ClientToRelay, ErrorCode, Login, MemberPresence, PresenceChange, RelayToClient, SessionId,
};
use peerchat_shared::identity::{PublicKey, SecretKey};
use peerchat_shared::login::{sign_login, LoginNonce};
use peerchat_shared::membership::{InviteToken, MembershipCertificate, Role};
use peerchat_shared::message::{ClientNonce, Draft, MessageBody};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// Guards against a hung test; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(20);

pub struct TestRelay {
    pub address: SocketAddr,
    pub key: SecretKey,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub fn config(admission: Admission) -> RelayConfig {
    RelayConfig::new(SecretKey::from_seed([1; 32]), admission)
}

/// A relay that lets test clients send as fast as they like.
pub fn unthrottled_config() -> RelayConfig {
    let mut config = config(Admission::Open);
    config.limits.messages_per_second = 100_000.0;
    config.limits.message_burst = 100_000.0;
    config.limits.frames_per_second = 100_000.0;
    config.limits.frame_burst = 100_000.0;
    config
}

impl TestRelay {
    pub async fn start(config: RelayConfig) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), config).await
    }

    pub async fn start_on(address: SocketAddr, config: RelayConfig) -> Self {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let key = config.signing_key.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, config, shutdown.clone()));
        Self {
            address,
            key,
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Logged-in members (keys from `seeds`) who have all joined `channel`.
    pub async fn members_in<const N: usize>(
        &self,
        channel: &str,
        seeds: [u8; N],
    ) -> [TestClient; N] {
        let mut members = Vec::with_capacity(N);
        for seed in seeds {
            let mut member = self.member(seed).await;
            member.join(channel).await;
            members.push(member);
        }
        members
            .try_into()
            .unwrap_or_else(|_| unreachable!("one member per seed"))
    }

    /// The Prometheus text from `GET /metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until `GET /metrics` has `line`; panics with the last text if it never does.
    pub async fn wait_for_metric(&self, line: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let metrics = self.metrics().await;
            if metrics.lines().any(|candidate| candidate == line) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {line:?} in {metrics}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A logged-in client with a fresh key derived from `seed`.
    pub async fn member(&self, seed: u8) -> TestClient {
        let (client, welcome) = TestClient::login(self, seed, Credentials::None).await;
        welcome.expect("login accepted");
        client
    }
}

pub enum Credentials {
    None,
    Certificate(MembershipCertificate),
    Invite(InviteToken),
}

pub struct TestClient {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub key: SecretKey,
    pub relay: PublicKey,
    pub session: SessionId,
    pub certificate: Option<MembershipCertificate>,
    pub role: Option<Role>,
}

impl TestClient {
    /// Opens a WebSocket and reads the challenge.
    pub async fn connect(
        relay: &TestRelay,
    ) -> (
        WebSocketStream<MaybeTlsStream<TcpStream>>,
        PublicKey,
        LoginNonce,
    ) {
        Self::connect_to(relay.address).await
    }

    /// Opens a WebSocket to a relay at `address` and reads the challenge.
    pub async fn connect_to(
        address: SocketAddr,
    ) -> (
        WebSocketStream<MaybeTlsStream<TcpStream>>,
        PublicKey,
        LoginNonce,
    ) {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
            .await
            .unwrap();
        match next_frame(&mut socket).await {
            RelayToClient::Challenge {
                protocol: 1,
                relay,
                nonce,
            } => (socket, relay, nonce),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    pub fn login_frame(
        key: &SecretKey,
        relay: &PublicKey,
        nonce: &LoginNonce,
        credentials: Credentials,
    ) -> ClientToRelay {
        let (certificate, invite) = match credentials {
            Credentials::None => (None, None),
            Credentials::Certificate(certificate) => (Some(certificate), None),
            Credentials::Invite(invite) => (None, Some(invite)),
        };
        ClientToRelay::Login(Box::new(Login {
            protocol: 1,
            key: key.public_key(),
            signature: sign_login(key, relay, nonce),
            certificate,
            invite,
            profile: None,
        }))
    }

    /// Logs in; on refusal returns the error code instead of a welcome.
    pub async fn login(
        relay: &TestRelay,
        seed: u8,
        credentials: Credentials,
    ) -> (Self, Result<(), ErrorCode>) {
        Self::login_to(relay.address, seed, credentials).await
    }

    /// Logs in to a relay at `address` with the key whose seed is `[seed; 32]`.
    pub async fn login_to(
        address: SocketAddr,
        seed: u8,
        credentials: Credentials,
    ) -> (Self, Result<(), ErrorCode>) {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
            .await
            .unwrap();
        Self::login_on(socket, seed, credentials).await
    }

    /// Logs in over a WebSocket just opened (its challenge not read yet).
    pub async fn login_on(
        mut socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
        seed: u8,
        credentials: Credentials,
    ) -> (Self, Result<(), ErrorCode>) {
        let key = SecretKey::from_seed([seed; 32]);
        let RelayToClient::Challenge {
            relay: relay_key,
            nonce,
            ..
        } = next_frame(&mut socket).await
        else {
            panic!("a connection starts with a challenge");
        };
        send_frame(
            &mut socket,
            &Self::login_frame(&key, &relay_key, &nonce, credentials),
        )
        .await;
        let mut client = Self {
            socket,
            key,
            relay: relay_key,
            session: SessionId(0),
            certificate: None,
            role: None,
        };
        match client.next().await {
            RelayToClient::Welcome {
                session,
                role,
                certificate,
                ..
            } => {
                client.session = session;
                client.role = Some(role);
                client.certificate = Some(certificate);
                (client, Ok(()))
            }
            RelayToClient::Error { code, .. } => (client, Err(code)),
            other => panic!("expected welcome or error, got {other:?}"),
        }
    }

    pub async fn send(&mut self, frame: &ClientToRelay) {
        send_frame(&mut self.socket, frame).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn next(&mut self) -> RelayToClient {
        next_frame(&mut self.socket).await
    }

    /// Skips frames until one matches; panics if none does within [`PATIENCE`] (however many
    /// other frames keep arriving).
    pub async fn next_matching(
        &mut self,
        wanted: impl Fn(&RelayToClient) -> bool,
    ) -> RelayToClient {
        let search = async {
            loop {
                let frame = self.next().await;
                if wanted(&frame) {
                    return frame;
                }
            }
        };
        tokio::time::timeout(PATIENCE, search)
            .await
            .expect("the awaited frame arrived in time")
    }

    pub async fn expect_error(&mut self) -> ErrorCode {
        match self
            .next_matching(|frame| matches!(frame, RelayToClient::Error { .. }))
            .await
        {
            RelayToClient::Error { code, .. } => code,
            _ => unreachable!(),
        }
    }

    /// Joins `channel`; returns the first members `joined` lists.
    pub async fn join(&mut self, channel: &str) -> Vec<MemberPresence> {
        self.send(&ClientToRelay::Join {
            channel: ChannelName::new(channel).unwrap(),
        })
        .await;
        match self
            .next_matching(|frame| matches!(frame, RelayToClient::Joined { .. }))
            .await
        {
            RelayToClient::Joined { members, .. } => members,
            _ => unreachable!(),
        }
    }

    pub fn draft(&self, channel: &str, nonce: u8, text: &str) -> Draft {
        Draft::sign(
            &self.key,
            &self.relay,
            ChannelName::new(channel).unwrap(),
            ClientNonce([nonce; 16]),
            MessageBody::text(text),
        )
    }

    /// Sends `message {index}` to `channel` for every index, each with its own nonce.
    pub async fn post_numbered(&mut self, channel: &str, indices: std::ops::Range<usize>) {
        for index in indices {
            let draft = Draft::sign(
                &self.key,
                &self.relay,
                ChannelName::new(channel).unwrap(),
                ClientNonce((index as u128).to_be_bytes()),
                MessageBody::text(format!("message {index}")),
            );
            self.send(&ClientToRelay::Send { draft }).await;
        }
    }

    /// Sends a ping and returns every frame that arrived before the pong.
    pub async fn drain(&mut self) -> Vec<RelayToClient> {
        self.send(&ClientToRelay::Ping).await;
        let mut frames = Vec::new();
        loop {
            match self.next().await {
                RelayToClient::Pong => return frames,
                frame => frames.push(frame),
            }
        }
    }
}

/// True for a `presence` frame saying someone left.
pub fn is_presence_left(frame: &RelayToClient) -> bool {
    matches!(
        frame,
        RelayToClient::Presence {
            change: PresenceChange::Left,
            ..
        }
    )
}

pub async fn send_frame(
    socket: &mut WebSocketStream<MaybeTlsStream<TcpStream>>,
    frame: &ClientToRelay,
) {
    socket
        .send(Message::Text(encode(frame).into()))
        .await
        .unwrap();
}

pub async fn next_frame(socket: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> RelayToClient {
    let frame = async {
        loop {
            let message = socket
                .next()
                .await
                .expect("the connection is open")
                .expect("a valid WebSocket message");
            match message {
                Message::Text(text) => {
                    return decode_relay_frame(text.as_str()).expect("a valid relay frame")
                }
                Message::Close(_) => panic!("the relay closed the connection"),
                // Pings and pongs: they may keep coming while no frame does.
                _ => continue,
            }
        }
    };
    tokio::time::timeout(PATIENCE, frame)
        .await
        .expect("the relay sent a frame in time")
}

/// Polls `condition` until it holds; panics naming `what` after a minute (a hung test guard).
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A benchmark's size: the number in the environment variable `name` (`cargo xtask bench`
/// sets it), or `default`.
pub fn benchmark_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} is a number, not {value:?}"))
    })
}

/// The relay binary as a process of its own, killed when dropped.
pub struct RelayProcess {
    pub child: std::process::Child,
    /// Where this process listens, as its own log says (never a port guessed beforehand, which
    /// another test's relay might take first).
    pub address: SocketAddr,
}

impl RelayProcess {
    /// Starts `command` (a relay told where to listen, port 0 for any) and waits until its log
    /// says where it listens; the rest of its log goes on to this test's stderr.
    pub fn start(command: &mut std::process::Command) -> Self {
        use std::io::BufRead as _;
        let mut child = command
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (found, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("{line}");
                if let Some(address) = line
                    .split_once(" listening on ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .and_then(|address| address.parse::<SocketAddr>().ok())
                {
                    let _ = found.send(address);
                }
            }
        });
        let Ok(address) = listening.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("the relay exited or never said where it listens");
        };
        Self { child, address }
    }

    /// The most memory the process has held (`VmHWM`), in bytes.
    pub fn peak_memory_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib * 1024
    }

    /// Stops the relay with SIGTERM and checks that it stopped cleanly.
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        assert!(
            self.child.wait().unwrap().success(),
            "the relay stops cleanly on SIGTERM"
        );
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
