//! `peerchat-load --soak-minutes N`: members joining, chatting, signalling, forwarding peer
//! frames, leaving channels, disconnecting and coming back, at random, against one relay for N
//! minutes. The relay process's memory, open files and threads are reported every minute and
//! must stay flat; when every member has left, its sessions and open files must be back where
//! they started.

use crate::{join_as, member_key, next_frame, read_process, Socket};
use anyhow::{bail, Context as _, Result};
use futures_util::SinkExt as _;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::codec::encode;
use peerchat_shared::frames::{ClientToRelay, PresenceChange, RelayToClient, SessionId};
use peerchat_shared::identity::{PublicKey, SecretKey};
use peerchat_shared::message::{ClientNonce, Draft, MessageBody};
use peerchat_shared::peer::PeerToPeer;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const CHANNELS: [&str; 4] = ["general", "soak-a", "soak-b", "soak-c"];
/// Session ids of others a member remembers, to signal and forward to.
const KNOWN_SESSIONS: usize = 64;

/// What the members did, together.
#[derive(Default)]
struct Tally {
    logins: AtomicU64,
    acks: AtomicU64,
    deliveries: AtomicU64,
    refusals: AtomicU64,
    failures: AtomicU64,
}

/// The relay process at one moment.
#[derive(Debug, Clone, Copy)]
struct Reading {
    rss_kib: u64,
    open_files: u64,
    threads: u64,
    sessions: u64,
    queued_bytes: u64,
}

fn read_relay(pid: u32, metrics_address: &str) -> Result<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let threads = status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|value| value.trim().parse().ok())
        .context("no Threads")?;
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let metrics = fetch_metrics(metrics_address)?;
    let metric = |name: &str| {
        metrics.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
    };
    Ok(Reading {
        rss_kib: read_process(pid)?.rss_kib,
        open_files,
        threads,
        sessions: metric("peerchat_sessions").context("no peerchat_sessions")?,
        queued_bytes: metric("peerchat_queued_bytes").context("no peerchat_queued_bytes")?,
    })
}

/// `GET /metrics` over a plain HTTP/1.0 connection.
fn fetch_metrics(address: &str) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: relay\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[allow(clippy::print_stdout)]
fn report(minute: u64, reading: &Reading, tally: &Tally) {
    let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "soak minute={minute} relay_rss_kib={} open_files={} threads={} sessions={} queued_bytes={} logins={} acks={} deliveries={} refusals={} failures={}",
        reading.rss_kib,
        reading.open_files,
        reading.threads,
        reading.sessions,
        reading.queued_bytes,
        count(&tally.logins),
        count(&tally.acks),
        count(&tally.deliveries),
        count(&tally.refusals),
        count(&tally.failures),
    );
}

/// Runs `members` members for `minutes` against the relay at `url` (process `pid`).
#[allow(clippy::print_stdout)]
pub(crate) async fn run(url: &str, pid: u32, members: usize, minutes: u64) -> Result<()> {
    let metrics_address = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .context("the relay URL must be ws://host:port/…")?
        .to_owned();
    // The relay's own virtual clients log in first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = read_relay(pid, &metrics_address)?;
    report(0, &before, &Tally::default());
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    let tasks: Vec<_> = (0..members)
        .map(|index| tokio::spawn(member(url.to_owned(), index, deadline, tally.clone())))
        .collect();
    let mut readings = Vec::new();
    for minute in 1..=minutes {
        let at = deadline - Duration::from_secs((minutes - minute) * 60);
        tokio::time::sleep_until(at.into()).await;
        let reading = read_relay(pid, &metrics_address)?;
        report(minute, &reading, &tally);
        readings.push(reading);
    }
    for task in tasks {
        task.await?;
    }
    // Give the relay a moment to notice the last closes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = read_relay(pid, &metrics_address)?;
    report(minutes + 1, &after, &tally);
    judge(&before, &readings, &after, members)
}

/// Flat: from the first third of the run to its end, memory grew by at most a quarter (and
/// 8 MiB), open files and threads by no more than the members' comings and goings explain;
/// with every member gone, sessions and open files are back where they started.
#[allow(clippy::print_stdout)]
fn judge(before: &Reading, readings: &[Reading], after: &Reading, members: usize) -> Result<()> {
    let (Some(warm), Some(last)) = (readings.get(readings.len() / 3), readings.last()) else {
        bail!("no readings");
    };
    let mut problems = Vec::new();
    if last.rss_kib > warm.rss_kib + warm.rss_kib / 4 + 8 * 1024 {
        problems.push(format!(
            "memory grew from {} to {} KiB",
            warm.rss_kib, last.rss_kib
        ));
    }
    if last.open_files > warm.open_files + members as u64 / 4 + 16 {
        let (from, to) = (warm.open_files, last.open_files);
        problems.push(format!("open files grew from {from} to {to}"));
    }
    if last.threads > warm.threads + 4 {
        problems.push(format!(
            "threads grew from {} to {}",
            warm.threads, last.threads
        ));
    }
    if after.queued_bytes > 1024 * 1024 {
        let queued = after.queued_bytes;
        problems.push(format!(
            "with every member gone, {queued} bytes are still queued"
        ));
    }
    if after.sessions > before.sessions || after.open_files > before.open_files + 4 {
        problems.push(format!(
            "with every member gone: {} sessions and {} open files (before: {} and {})",
            after.sessions, after.open_files, before.sessions, before.open_files
        ));
    }
    if problems.is_empty() {
        println!("soak: flat");
        Ok(())
    } else {
        bail!("soak: not flat: {}", problems.join("; "))
    }
}

/// One member until the deadline: connected for a random while, then away for a few seconds.
async fn member(url: String, index: usize, deadline: Instant, tally: Arc<Tally>) {
    let key = member_key(1_000_000 + index);
    let mut random = SmallRng::seed_from_u64(index as u64);
    // Arrivals spread over the first seconds, as after a relay restart.
    let arrival = Duration::from_millis(random.random_range(0..10_000));
    tokio::time::sleep(arrival).await;
    while Instant::now() < deadline {
        let stay = Duration::from_secs(random.random_range(20..120));
        let until = (Instant::now() + stay).min(deadline);
        if connected(&url, &key, &mut random, until, &tally)
            .await
            .is_err()
        {
            tally.failures.fetch_add(1, Ordering::Relaxed);
        }
        let away = Duration::from_millis(random.random_range(1_000..5_000));
        tokio::time::sleep_until((Instant::now() + away).min(deadline).into()).await;
    }
}

/// What a member knows while connected.
struct Life<'a> {
    key: &'a SecretKey,
    relay: PublicKey,
    joined: BTreeSet<ChannelName>,
    others: Vec<SessionId>,
    next_nonce: u128,
}

async fn connected(
    url: &str,
    key: &SecretKey,
    random: &mut SmallRng,
    until: Instant,
    tally: &Tally,
) -> Result<()> {
    let general = ChannelName::new(CHANNELS[0])?;
    let (mut socket, relay) = join_as(url, key, &general).await?;
    tally.logins.fetch_add(1, Ordering::Relaxed);
    let mut life = Life {
        key,
        relay,
        joined: BTreeSet::from([general]),
        others: Vec::new(),
        next_nonce: random.random(),
    };
    let mut actions = tokio::time::interval(Duration::from_millis(random.random_range(700..1_500)));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => break,
            frame = next_frame(&mut socket) => note(&mut life, frame?, tally),
            _ = actions.tick() => act(&mut socket, &mut life, random).await?,
        }
    }
    socket.close(None).await.ok();
    Ok(())
}

fn note(life: &mut Life, frame: RelayToClient, tally: &Tally) {
    let mut seen = |session: SessionId| {
        if life.others.len() >= KNOWN_SESSIONS {
            life.others.remove(0);
        }
        life.others.push(session);
    };
    match frame {
        RelayToClient::Joined { members, .. } | RelayToClient::Members { members, .. } => {
            members.iter().for_each(|member| seen(member.session))
        }
        RelayToClient::Presence {
            change: PresenceChange::Joined,
            member,
            ..
        } => seen(member.session),
        RelayToClient::Message { .. } => {
            tally.deliveries.fetch_add(1, Ordering::Relaxed);
        }
        RelayToClient::Ack { .. } => {
            tally.acks.fetch_add(1, Ordering::Relaxed);
        }
        RelayToClient::Error { .. } => {
            tally.refusals.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// One random action: post, join, leave, signal, forward a peer frame, or ping.
async fn act(socket: &mut Socket, life: &mut Life<'_>, random: &mut SmallRng) -> Result<()> {
    let joined: Vec<ChannelName> = life.joined.iter().cloned().collect();
    let channel = joined[random.random_range(0..joined.len())].clone();
    let someone =
        (!life.others.is_empty()).then(|| life.others[random.random_range(0..life.others.len())]);
    let frame = match (random.random_range(0..10), someone) {
        (0..=2, _) => {
            life.next_nonce = life.next_nonce.wrapping_add(1);
            let text = "soak ".repeat(random.random_range(4..80));
            let draft = Draft::sign(
                life.key,
                &life.relay,
                channel,
                ClientNonce(life.next_nonce.to_be_bytes()),
                MessageBody::text(text),
            );
            ClientToRelay::Send { draft }
        }
        (3, _) => {
            let channel = ChannelName::new(CHANNELS[random.random_range(1..CHANNELS.len())])?;
            life.joined.insert(channel.clone());
            ClientToRelay::Join { channel }
        }
        (4, _) if channel.as_str() != CHANNELS[0] => {
            life.joined.remove(&channel);
            ClientToRelay::Leave { channel }
        }
        (5 | 6, Some(to)) => ClientToRelay::Signal {
            to,
            data: r#"{"kind":"offer","sdp":"v=0\r\ns=soak\r\n"}"#.to_owned(),
        },
        (7 | 8, Some(to)) => ClientToRelay::Peer {
            to,
            frame: encode(&PeerToPeer::Have {
                channel,
                ids: vec![],
            }),
        },
        _ => ClientToRelay::Ping,
    };
    socket.send(Message::Text(encode(&frame).into())).await?;
    Ok(())
}
