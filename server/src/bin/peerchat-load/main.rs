//! `peerchat-load`: a load generator for a running relay, over real WebSockets.
//!
//! Logs in N members who join one channel, reads the relay process's RSS while they idle, then
//! has M of them publish pre-signed messages at a fixed total rate and measures delivered
//! messages per second, publish-to-delivery latency, and the relay's CPU time per delivery and
//! per publish (from /proc/<pid>/stat). Bounded in count and time; stops by itself.
//! With `--soak-minutes`, a soak instead (see `soak.rs`).

mod soak;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use peerchat_shared::channel::ChannelName;
use peerchat_shared::codec::{decode_relay_frame, encode};
use peerchat_shared::frames::{ClientToRelay, Login, RelayToClient};
use peerchat_shared::identity::{PublicKey, SecretKey};
use peerchat_shared::login::sign_login;
use peerchat_shared::message::{ClientNonce, Draft, MessageBody};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Load generator for a peerchat relay.
#[derive(Debug, Parser)]
struct Options {
    /// The relay's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    relay: String,
    /// Process id of the relay, for RSS and CPU readings.
    #[arg(long)]
    pid: u32,
    /// Members connected and joined to the channel.
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// How many of them publish.
    #[arg(long, default_value_t = 10)]
    publishers: usize,
    /// Messages per second, all publishers together (0: measure idle memory only).
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Message text length in bytes.
    #[arg(long, default_value_t = 200)]
    text_bytes: usize,
    /// With `--rate 0`: members per channel (`bench0`, `bench1`, …) instead of all in one; a
    /// join's presence goes to everyone in the channel, so one huge channel costs O(N²).
    #[arg(long)]
    members_per_channel: Option<usize>,
    /// Index of the first member's key, so that several generators use distinct keys.
    #[arg(long, default_value_t = 0)]
    first_member: usize,
    /// With `--rate 0`: keep the members connected this long after the reading.
    #[arg(long, default_value_t = 0)]
    hold_seconds: u64,
    /// Instead: `--members` members joining, chatting, signalling and leaving at random for
    /// this many minutes, the relay's memory, open files and threads reported every minute.
    #[arg(long)]
    soak_minutes: Option<u64>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct ProcessReading {
    rss_kib: u64,
    cpu_ticks: u64,
}

/// Linux reports process CPU time in USER_HZ ticks, 100 per second.
const TICKS_PER_SECOND: f64 = 100.0;

fn read_process(pid: u32) -> Result<ProcessReading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the parenthesised command name, utime and stime are the 12th and 13th fields.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("bad stat")?
        .1
        .split_whitespace()
        .collect();
    let cpu_ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ProcessReading { rss_kib, cpu_ticks })
}

async fn next_frame(socket: &mut Socket) -> Result<RelayToClient> {
    loop {
        match socket.next().await.context("connection closed")?? {
            Message::Text(text) => return Ok(decode_relay_frame(text.as_str())?),
            Message::Close(_) => bail!("closed by the relay"),
            _ => {}
        }
    }
}

/// Connects, logs in and joins `channel`; returns the socket and the relay's key.
async fn join_as(url: &str, key: &SecretKey, channel: &ChannelName) -> Result<(Socket, PublicKey)> {
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let RelayToClient::Challenge { relay, nonce, .. } = next_frame(&mut socket).await? else {
        bail!("no challenge")
    };
    let login = Login {
        protocol: 1,
        key: key.public_key(),
        signature: sign_login(key, &relay, &nonce),
        certificate: None,
        invite: None,
        profile: None,
    };
    socket
        .send(Message::Text(
            encode(&ClientToRelay::Login(Box::new(login))).into(),
        ))
        .await?;
    match next_frame(&mut socket).await? {
        RelayToClient::Welcome { .. } => {}
        other => bail!("login refused: {other:?}"),
    }
    socket
        .send(Message::Text(
            encode(&ClientToRelay::Join {
                channel: channel.clone(),
            })
            .into(),
        ))
        .await?;
    while !matches!(next_frame(&mut socket).await?, RelayToClient::Joined { .. }) {}
    Ok((socket, relay))
}

/// When each numbered message was sent, in microseconds since the run started (0: not yet).
struct SendTimes {
    start: Instant,
    sent_at: Vec<AtomicU64>,
}

impl SendTimes {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// Reads deliveries until `stop` fires, returning latencies in microseconds. Only `message`
/// frames count: the author's own `ack` is not a delivery.
async fn receive(
    mut stream: SplitStream<Socket>,
    times: Arc<SendTimes>,
    stop: CancellationToken,
    delivered: Arc<AtomicU64>,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return latencies,
            message = stream.next() => message,
        };
        let text = match message {
            None => return latencies,
            Some(Ok(Message::Text(text))) => text,
            Some(_) => continue,
        };
        if !text.as_str().starts_with("{\"type\":\"message\"") {
            continue;
        }
        // Cheap extraction instead of a full decode: the text starts with "n=<number>;".
        let number = text
            .as_str()
            .split("\"text\":\"n=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|digits| digits.parse::<usize>().ok());
        if let Some(sent) = number
            .and_then(|number| times.sent_at.get(number))
            .map(|at| at.load(Ordering::Relaxed))
        {
            latencies.push(u32::try_from(times.now().saturating_sub(sent)).unwrap_or(u32::MAX));
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn percentile_ms(sorted: &[u32], fraction: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    f64::from(sorted[(last as f64 * fraction).round() as usize]) / 1000.0
}

fn member_key(index: usize) -> SecretKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(index as u64).to_be_bytes());
    SecretKey::from_seed(seed)
}

/// A joined member: its key, the write half of its socket, and its reader task.
struct Member {
    key: SecretKey,
    sink: SplitSink<Socket, Message>,
    reader: tokio::task::JoinHandle<Vec<u32>>,
}

/// What the readers share: send times, the delivery count, and the signal to stop.
struct Run {
    times: Arc<SendTimes>,
    delivered: Arc<AtomicU64>,
    stop: CancellationToken,
}

#[allow(clippy::print_stdout)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let options = Options::parse();
    if let Some(minutes) = options.soak_minutes {
        return soak::run(&options.relay, options.pid, options.members, minutes).await;
    }
    let channel = ChannelName::new("bench")?;
    let total = usize::try_from(options.rate * options.seconds)?;
    let run = Run {
        times: Arc::new(SendTimes {
            start: Instant::now(),
            sent_at: (0..total).map(|_| AtomicU64::new(0)).collect(),
        }),
        delivered: Arc::new(AtomicU64::new(0)),
        stop: CancellationToken::new(),
    };
    let baseline = read_process(options.pid)?;

    // Each member starts reading as soon as it has joined, as a browser would, so presence
    // frames about later arrivals never pile up.
    let connect_started = Instant::now();
    let mut members = Vec::with_capacity(options.members);
    let mut relay = None;
    for index in options.first_member..options.first_member + options.members {
        let key = member_key(index);
        let channel = match options.members_per_channel {
            Some(size) if total == 0 => ChannelName::new(format!("bench{}", index / size.max(1)))?,
            _ => channel.clone(),
        };
        let (socket, relay_key) = join_as(&options.relay, &key, &channel)
            .await
            .with_context(|| format!("member {index}"))?;
        relay = Some(relay_key);
        let (sink, stream) = socket.split();
        let reader = tokio::spawn(receive(
            stream,
            run.times.clone(),
            run.stop.clone(),
            run.delivered.clone(),
        ));
        members.push(Member { key, sink, reader });
    }
    let connect_rate = options.members as f64 / connect_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = read_process(options.pid)?;
    let per_connection =
        idle.rss_kib.saturating_sub(baseline.rss_kib) as f64 * 1024.0 / options.members as f64;
    println!(
        "members={} logins_per_s={connect_rate:.0} relay_rss_before_kib={} relay_rss_idle_kib={} rss_per_connection_bytes={per_connection:.0}",
        options.members, baseline.rss_kib, idle.rss_kib
    );
    match relay {
        Some(relay) if total > 0 => {
            publish_and_measure(&options, &channel, &relay, members, run).await
        }
        _ => {
            tokio::time::sleep(Duration::from_secs(options.hold_seconds)).await;
            drop(members);
            Ok(())
        }
    }
}

#[allow(clippy::print_stdout)]
async fn publish_and_measure(
    options: &Options,
    channel: &ChannelName,
    relay: &PublicKey,
    mut members: Vec<Member>,
    run: Run,
) -> Result<()> {
    let total = run.times.sent_at.len();
    let publishers = options.publishers.clamp(1, members.len());
    // Pre-sign every message so signing does not limit the publishing rate.
    let drafts: Vec<Draft> = (0..total)
        .map(|number| {
            let text = format!("n={number};{}", "x".repeat(options.text_bytes));
            let nonce = ClientNonce((number as u128).to_be_bytes());
            Draft::sign(
                &members[number % publishers].key,
                relay,
                channel.clone(),
                nonce,
                MessageBody::text(text),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(options.seconds + 30);
    let cpu_before = read_process(options.pid)?.cpu_ticks;
    let publishing = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate as f64));
    for (number, draft) in drafts.into_iter().enumerate() {
        interval.tick().await;
        run.times.sent_at[number].store(run.times.now(), Ordering::Relaxed);
        let frame = Message::Text(encode(&ClientToRelay::Send { draft }).into());
        members[number % publishers].sink.send(frame).await?;
    }
    let publish_seconds = publishing.elapsed().as_secs_f64();
    // Each message reaches every member but its author (who gets an ack instead).
    let expected = (total * (members.len() - 1)) as u64;
    while run.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivery_seconds = publishing.elapsed().as_secs_f64();
    let cpu_seconds = (read_process(options.pid)?.cpu_ticks - cpu_before) as f64 / TICKS_PER_SECOND;
    let delivered = run.delivered.load(Ordering::Relaxed);
    run.stop.cancel();
    let mut latencies = Vec::with_capacity(delivered as usize);
    for member in members {
        if let Ok(mut part) = member.reader.await {
            latencies.append(&mut part);
        }
    }
    latencies.sort_unstable();
    println!(
        "published={total} in {publish_seconds:.1}s delivered={delivered}/{expected} deliveries_per_s={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} relay_cpu_s={cpu_seconds:.2} cpu_us_per_delivery={:.2} cpu_us_per_publish={:.1}",
        delivered as f64 / delivery_seconds,
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 0.999),
        cpu_seconds * 1e6 / delivered.max(1) as f64,
        cpu_seconds * 1e6 / total as f64,
    );
    if delivered < expected {
        bail!("only {delivered} of {expected} deliveries arrived");
    }
    Ok(())
}
