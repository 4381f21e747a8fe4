//! The relay's configuration: identity, admission policy, channels, bans, ICE servers, limits.

use crate::client_address::TrustedProxy;
use crate::metrics::ArchiveStats;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::frames::IceServer;
use peerchat_shared::identity::{PublicKey, SecretKey};
use peerchat_shared::limits::{RELAYED_PEER_BURST_BYTES, RELAYED_PEER_BYTES_PER_SECOND};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Who may join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Admission {
    /// Any key that logs in becomes a member.
    Open,
    /// Only keys holding a membership certificate or an invite token.
    InviteOnly,
}

/// Everything [`crate::run`] needs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub signing_key: SecretKey,
    pub admission: Admission,
    /// Channels always listed, even when nobody is in them.
    pub default_channels: Vec<ChannelName>,
    /// Keys refused at login.
    pub banned: HashSet<PublicKey>,
    /// Keys that log in as owners (may mint invites).
    pub owners: HashSet<PublicKey>,
    /// Keys that log in as virtual clients (archive peers that members ask last).
    pub virtual_clients: HashSet<PublicKey>,
    /// Health of the virtual clients running in this process, for `/metrics`.
    pub virtual_client_stats: Vec<Arc<dyn ArchiveStats>>,
    pub ice_servers: Vec<IceServer>,
    /// Serve the web client from this folder (a bundle as `cargo xtask web` writes it to
    /// web/dist) instead of the copy embedded in the binary, for working on the UI without
    /// rebuilding the relay.
    pub web_dir: Option<PathBuf>,
    /// The relay's public URL, shown in `/.well-known/peerchat`.
    pub public_url: Option<String>,
    /// Where clients' addresses come from, for the per-address limits.
    pub trusted_proxy: TrustedProxy,
    pub limits: RelayLimits,
}

impl RelayConfig {
    /// A relay with this key and admission that lists `#general`, with no bans, owners or
    /// virtual clients, no ICE servers, the embedded web client and the default limits.
    #[allow(clippy::expect_used, reason = "`general` is a valid channel name")]
    pub fn new(signing_key: SecretKey, admission: Admission) -> Self {
        Self {
            signing_key,
            admission,
            default_channels: vec![ChannelName::new("general").expect("a valid channel name")],
            banned: HashSet::new(),
            owners: HashSet::new(),
            virtual_clients: HashSet::new(),
            virtual_client_stats: Vec::new(),
            ice_servers: Vec::new(),
            web_dir: None,
            public_url: None,
            trusted_proxy: TrustedProxy::None,
            limits: RelayLimits::default(),
        }
    }
}

/// Sizes, rates and time-outs. The defaults suit a 256 MB VM with thousands of members.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// How long a login challenge stays valid.
    pub challenge_ttl: Duration,
    /// Validity of the membership certificates handed out at login.
    pub certificate_ttl: Duration,
    /// Frames, and bytes, queued for one connection before it counts as a slow consumer and is
    /// closed.
    pub send_queue_frames: usize,
    pub send_queue_bytes: usize,
    /// Bytes all connections' queues may hold together; past it, a connection whose queue holds
    /// more than an equal share is a slow consumer.
    pub queued_bytes_total: usize,
    /// Bytes queued for a connection beyond which `signal` and `peer` frames for it are turned
    /// away (the sender gets `rate_limited`) rather than queued: others cannot make it a slow
    /// consumer.
    pub forwarded_queue_bytes: usize,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// How often the relay pings each connection.
    pub ping_interval: Duration,
    pub max_sessions: usize,
    pub connections_per_key: usize,
    pub connections_per_address: usize,
    /// An address prefix (an IPv4 address, an IPv6 /64) gets this many times a key's rates
    /// and bursts, shared by every key connecting from it, so that new keys do not bring new
    /// allowances. Members behind one NAT share it.
    pub address_rate_multiple: f64,
    /// Sustained frames per second per key, and the burst allowed above it.
    pub frames_per_second: f64,
    pub frame_burst: f64,
    /// Sustained messages (`send`) per second per key, and the burst.
    pub messages_per_second: f64,
    pub message_burst: f64,
    /// Bytes of `peer` frames (history forwarded for members without a data channel) per
    /// second per key, and the burst allowed above it.
    pub peer_bytes_per_second: f64,
    pub peer_burst_bytes: f64,
    /// Failed logins per address per minute before further attempts are refused.
    pub failed_logins_per_minute: f64,
    /// How long a (author, nonce) pair is remembered so that a resend gets the same envelope.
    pub resend_window: Duration,
    /// At most this many remembered sends, oldest forgotten first.
    pub resend_memory: usize,
    /// Consecutive rate-limited frames after which the connection is closed.
    pub max_rate_limit_strikes: u32,
    /// Connections that have not logged in yet, in all and per address.
    pub max_pending_logins: usize,
    pub pending_logins_per_address: usize,
    /// HTTP connections not yet answered or upgraded to a WebSocket, at a time.
    pub max_http_connections: usize,
    /// A connection that has not sent a request's headers within this time is closed.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); larger ones get 431 (at least 8 KiB).
    pub max_header_bytes: usize,
}

/// Open files the relay needs besides its connections: the listener, log and key files, the
/// in-process virtual clients' caches and sockets.
const RESERVED_OPEN_FILES: u64 = 256;

impl RelayLimits {
    /// Lowers `max_sessions` so that every connection the limits allow fits within `open_files`
    /// file descriptors; returns a warning saying so when it had to.
    pub fn fit_open_files(&mut self, open_files: u64) -> Option<String> {
        let others = (self.max_pending_logins + self.max_http_connections) as u64;
        let room = open_files.saturating_sub(RESERVED_OPEN_FILES + others);
        let fitting = usize::try_from(room).unwrap_or(usize::MAX).max(1);
        if fitting >= self.max_sessions {
            return None;
        }
        let wanted = self.max_sessions;
        self.max_sessions = fitting;
        Some(format!(
            "only {open_files} open files are allowed (ulimit -n): at most {fitting} sessions instead of {wanted}; raise the limit (LimitNOFILE= in systemd) for more"
        ))
    }
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            challenge_ttl: Duration::from_secs(30),
            certificate_ttl: Duration::from_secs(90 * 24 * 3600),
            send_queue_frames: 256,
            send_queue_bytes: 1024 * 1024,
            forwarded_queue_bytes: 512 * 1024,
            queued_bytes_total: 64 * 1024 * 1024,
            idle_timeout: Duration::from_secs(75),
            ping_interval: Duration::from_secs(25),
            max_sessions: 20_000,
            connections_per_key: 8,
            connections_per_address: 64,
            address_rate_multiple: 8.0,
            frames_per_second: 20.0,
            frame_burst: 60.0,
            messages_per_second: 5.0,
            message_burst: 20.0,
            peer_bytes_per_second: RELAYED_PEER_BYTES_PER_SECOND as f64,
            peer_burst_bytes: RELAYED_PEER_BURST_BYTES as f64,
            failed_logins_per_minute: 10.0,
            resend_window: Duration::from_secs(600),
            resend_memory: 50_000,
            max_rate_limit_strikes: 50,
            max_pending_logins: 1024,
            pending_logins_per_address: 16,
            max_http_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_capped_so_every_allowed_connection_has_a_file_descriptor() {
        let mut limits = RelayLimits::default();
        assert_eq!(limits.fit_open_files(1 << 20), None);
        assert_eq!(limits.max_sessions, 20_000);

        let warning = limits.fit_open_files(4096).unwrap();
        let others = limits.max_pending_logins + limits.max_http_connections;
        assert_eq!(limits.max_sessions, 4096 - 256 - others);
        assert!(warning.contains("ulimit -n"), "{warning}");

        limits.fit_open_files(10);
        assert_eq!(limits.max_sessions, 1);
    }
}
