//! Virtual clients for these tests: a relay-signed history written straight into a cache
//! file, a configuration for a test relay, and waiting until one holds a count of messages.

use crate::support::{wait_until, TestRelay};
use peerchat_shared::channel::ChannelName;
use peerchat_shared::identity::SecretKey;
use peerchat_shared::ids::MessageIdGenerator;
use peerchat_shared::message::{ClientNonce, Draft, MessageBody, VerifiedEnvelope};
use peerchat_shared::time::UnixMillis;
use std::path::Path;

/// `count` messages of about 100 bytes, stamped just now by `relay`, in the cache file `path`.
pub fn seed_cache(path: &Path, relay: &SecretKey, count: usize) {
    let author = SecretKey::from_seed([42; 32]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut ids = MessageIdGenerator::default();
    let relay_verifier = relay.public_key().verifier().unwrap();
    let envelopes: Vec<VerifiedEnvelope> = (0..count)
        .map(|n| {
            let draft = Draft::sign(
                &author,
                &relay.public_key(),
                ChannelName::new("general").unwrap(),
                ClientNonce((n as u128).to_be_bytes()),
                MessageBody::text(format!("message {n}: {}", "lorem ipsum ".repeat(7))),
            );
            let verified = draft
                .verify(
                    &relay.public_key(),
                    &author.public_key().verifier().unwrap(),
                )
                .unwrap();
            let stamped = verified.seal(ids.next(UnixMillis(now), n as u128).unwrap(), relay);
            stamped.verify(&relay_verifier).unwrap()
        })
        .collect();
    let mut cache =
        peerchat_virtual::HistoryCache::open(path, peerchat_virtual::CacheLimits::default())
            .unwrap();
    cache.insert(&envelopes, UnixMillis(now)).unwrap();
}

/// A virtual client's configuration for `relay`, its links bound to `udp` (loopback, or every
/// interface of a test's namespace), mDNS off; [`peerchat_virtual::Fleet::config`] adds files.
pub fn virtual_client_template(
    relay: &TestRelay,
    udp: &str,
) -> peerchat_virtual::VirtualClientConfig {
    peerchat_virtual::VirtualClientConfig {
        relay_url: format!("ws://{}/ws", relay.address),
        key_file: "unused".into(),
        invite: None,
        channels: None,
        cache: peerchat_virtual::CacheLimits::default(),
        cache_file: None,
        attachments: peerchat_virtual::AttachmentLimits::default(),
        attachment_file: None,
        links: peerchat_virtual::LinkSettings {
            udp_bind: vec![udp.parse().unwrap()],
            mdns: false,
        },
        bytes_per_second: peerchat_virtual::DEFAULT_BYTES_PER_SECOND,
    }
}

/// This process's resident memory in KiB.
pub fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

/// Waits until `condition` holds, polling, for at most `patience`.
pub async fn wait_for(patience: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + patience;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub async fn wait_until_cached(client: &peerchat_virtual::VirtualClient, count: u64) {
    wait_until(&format!("{count} cached messages"), || {
        client.stats.cached_messages() == count
    })
    .await;
}
