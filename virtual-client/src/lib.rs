//! peerchat's virtual clients: headless members run by the operator beside the relay, peers of
//! last resort that keep the recent history of their channels and serve it to newcomers when no
//! member can. Each runs `shared`'s node (session, mesh and sync engine) like a browser, over
//! tokio-tungstenite (relay) and `webrtc` data channels (peers), with a bounded cache
//! ([`cache`]). The relay marks them as role `virtual`; members ask them last.
//!
//! [`start`] runs one in a tokio task; [`Fleet`] names the files of several.

pub mod attachments;
pub mod cache;
pub mod cli;
mod driver;
mod peer_links;
mod relay_socket;
mod state_files;
mod throttle;

pub use attachments::{AttachmentCache, AttachmentLimits};
pub use cache::{CacheLimits, HistoryCache};
pub use peer_links::LinkSettings;

use anyhow::Context as _;
use driver::Driver;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::ClientConfig;
use peerchat_shared::identity::PublicKey;
use peerchat_shared::key_file;
use peerchat_shared::membership::InviteToken;
use peerchat_shared::node::{Node, NodeConfig};
use peerchat_shared::sync::SyncLimits;
use state_files::StateFiles;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use throttle::Throttle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Logging when `RUST_LOG` is unset: the WebRTC stack logs every state change at `info`.
pub const DEFAULT_LOG_FILTER: &str =
    "info,rtc=warn,rtc_ice=warn,rtc_dtls=warn,rtc_sctp=warn,rtc_datachannel=warn,webrtc=warn";

/// Logs to stderr, filtered by `RUST_LOG` or else [`DEFAULT_LOG_FILTER`] (both binaries).
pub fn init_logging() {
    // Colours only on a terminal: not in files, journald or a test's captured output.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colours)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into()),
        )
        .init();
}

/// Default bandwidth budget of one virtual client's links.
pub const DEFAULT_BYTES_PER_SECOND: u64 = 1024 * 1024;

/// Everything one virtual client needs.
#[derive(Debug, Clone)]
pub struct VirtualClientConfig {
    /// The relay's WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`.
    pub relay_url: String,
    /// The member key, created on first run; the relay pin and certificate are kept beside it.
    pub key_file: PathBuf,
    /// An invite (role `virtual`) for the first login to an invite-only relay.
    pub invite: Option<InviteToken>,
    /// Channels to keep; `None`: every channel the relay lists.
    pub channels: Option<BTreeSet<ChannelName>>,
    pub cache: CacheLimits,
    /// The cache's redb file; `None`: in memory only.
    pub cache_file: Option<PathBuf>,
    pub attachments: AttachmentLimits,
    /// The attachment cache's redb file; `None`: in memory only.
    pub attachment_file: Option<PathBuf>,
    pub links: LinkSettings,
    /// What its links may send per second, together.
    pub bytes_per_second: u64,
}

/// A virtual client's health, for logs and the relay's metrics.
#[derive(Debug, Default)]
pub struct VirtualClientStats {
    pub online: AtomicBool,
    pub cached_messages: AtomicU64,
    pub cached_bytes: AtomicU64,
    /// Envelopes read from the cache for peers that asked.
    pub envelopes_served: AtomicU64,
    pub data_channels_open: AtomicU64,
    /// Attachments held whole, and the bytes the attachments kept take.
    pub cached_attachments: AtomicU64,
    pub attachment_bytes: AtomicU64,
    /// Attachment chunks read from the cache for peers that asked.
    pub chunks_served: AtomicU64,
}

impl VirtualClientStats {
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    pub fn cached_messages(&self) -> u64 {
        self.cached_messages.load(Ordering::Relaxed)
    }

    pub fn cached_bytes(&self) -> u64 {
        self.cached_bytes.load(Ordering::Relaxed)
    }

    pub fn envelopes_served(&self) -> u64 {
        self.envelopes_served.load(Ordering::Relaxed)
    }

    pub fn data_channels_open(&self) -> u64 {
        self.data_channels_open.load(Ordering::Relaxed)
    }

    pub fn cached_attachments(&self) -> u64 {
        self.cached_attachments.load(Ordering::Relaxed)
    }

    pub fn attachment_bytes(&self) -> u64 {
        self.attachment_bytes.load(Ordering::Relaxed)
    }

    pub fn chunks_served(&self) -> u64 {
        self.chunks_served.load(Ordering::Relaxed)
    }
}

/// A running virtual client.
#[derive(Debug)]
pub struct VirtualClient {
    pub public_key: PublicKey,
    pub stats: Arc<VirtualClientStats>,
    pub task: JoinHandle<()>,
}

/// Starts a virtual client in a tokio task; it runs until `shutdown` fires.
pub fn start(
    config: VirtualClientConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<VirtualClient> {
    let (key, created) = key_file::load_or_create(&config.key_file, rand::random)?;
    if created {
        tracing::info!("created virtual client key {}", config.key_file.display());
    }
    let cache = match &config.cache_file {
        Some(path) => HistoryCache::open(path, config.cache)
            .with_context(|| format!("cannot open the cache {}", path.display()))?,
        None => HistoryCache::in_memory(config.cache),
    };
    let attachments = match &config.attachment_file {
        Some(path) => AttachmentCache::open(path, config.attachments)
            .with_context(|| format!("cannot open the attachment cache {}", path.display()))?,
        None => AttachmentCache::in_memory(config.attachments),
    };
    let files = StateFiles::beside(&config.key_file);
    let now = driver::now();
    let public_key = key.public_key();
    let window_millis = u64::try_from(config.cache.window.as_millis()).unwrap_or(u64::MAX);
    let node = Node::new(
        now,
        NodeConfig {
            session: ClientConfig {
                key,
                display_name: None,
                pinned_relay: files.pinned_relay(),
                certificate: files.certificate(),
                invite: config.invite,
                outbox: Vec::new(),
                // Named channels are joined at login even when the relay does not list them yet.
                known_channels: config.channels.iter().flatten().cloned().collect(),
                random_seed: rand::random(),
            },
            mesh_seed: rand::random(),
            sync_limits: SyncLimits {
                horizon_millis: Some(window_millis),
                ..SyncLimits::default()
            },
        },
    );
    let (feed, inputs) = tokio::sync::mpsc::channel(driver::INPUT_QUEUE);
    let throttle = Arc::new(Throttle::new(config.bytes_per_second));
    let links = peer_links::PeerLinks::new(config.links, feed.clone(), throttle);
    let stats = Arc::new(VirtualClientStats::default());
    let driver = Driver::new(
        node,
        links,
        cache,
        attachments,
        files,
        config.relay_url,
        config.channels,
        Arc::clone(&stats),
        feed,
    );
    let task = tokio::spawn(driver.run(inputs, shutdown));
    Ok(VirtualClient {
        public_key,
        stats,
        task,
    })
}

/// How virtual clients cache, send and reach peers: the command-line options that
/// `peerchat-virtual` and the relay's `--virtual-clients` share.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Virtual clients")]
pub struct VirtualClientOptions {
    /// Keep messages of the last this many hours.
    #[arg(long, env = "PEERCHAT_VIRTUAL_HOURS", default_value_t = 6.0)]
    pub cache_hours: f64,
    /// Keep at most this many megabytes of messages per virtual client.
    #[arg(long, env = "PEERCHAT_VIRTUAL_MEGABYTES", default_value_t = 32)]
    pub cache_megabytes: usize,
    /// Keep at most this many megabytes of attachments per virtual client (posted within the
    /// same hours); in memory unless there is a data directory.
    #[arg(
        long,
        env = "PEERCHAT_VIRTUAL_ATTACHMENT_MEGABYTES",
        default_value_t = 64
    )]
    pub attachment_megabytes: u64,
    /// What each virtual client's links may send, in kilobytes per second.
    #[arg(
        long = "upload-kbps",
        env = "PEERCHAT_VIRTUAL_KBPS", default_value_t = DEFAULT_BYTES_PER_SECOND / 1024)]
    pub kilobytes_per_second: u64,
    /// Local UDP addresses for WebRTC (comma-separated); 0.0.0.0:0 means every interface.
    #[arg(
        long = "webrtc-udp",
        env = "PEERCHAT_VIRTUAL_UDP",
        value_delimiter = ',',
        default_value = "0.0.0.0:0"
    )]
    pub udp: Vec<std::net::SocketAddr>,
    /// Accept members' mDNS (.local) ICE candidates; needs a network with multicast.
    #[arg(long = "webrtc-mdns", env = "PEERCHAT_VIRTUAL_MDNS")]
    pub mdns: bool,
}

impl VirtualClientOptions {
    /// A configuration for these options; [`Fleet::config`] fills in the files.
    pub fn template(
        &self,
        relay_url: String,
        invite: Option<InviteToken>,
        channels: Option<BTreeSet<ChannelName>>,
    ) -> VirtualClientConfig {
        VirtualClientConfig {
            relay_url,
            key_file: PathBuf::from("virtual.key"),
            invite,
            channels,
            cache: CacheLimits {
                window: std::time::Duration::from_secs_f64(self.cache_hours.max(0.0) * 3600.0),
                max_bytes: self.cache_megabytes.saturating_mul(1024 * 1024),
            },
            cache_file: None,
            attachments: AttachmentLimits {
                max_bytes: self.attachment_megabytes.saturating_mul(1024 * 1024),
            },
            attachment_file: None,
            links: LinkSettings {
                udp_bind: self.udp.clone(),
                mdns: self.mdns,
            },
            bytes_per_second: self.kilobytes_per_second.saturating_mul(1024),
        }
    }
}

/// Where the files of `count` virtual clients live: `virtual-<n>.key` (with its `.relay` and
/// `.certificate`) in `key_dir`, and `virtual-<n>.redb` (history) and
/// `virtual-<n>-attachments.redb` in `data_dir` when there is one.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub key_dir: PathBuf,
    pub data_dir: Option<PathBuf>,
}

impl Fleet {
    /// The configuration of virtual client `number` (from 1), `template`'s otherwise.
    pub fn config(&self, template: &VirtualClientConfig, number: usize) -> VirtualClientConfig {
        VirtualClientConfig {
            key_file: self.key_dir.join(format!("virtual-{number}.key")),
            cache_file: self
                .data_dir
                .as_ref()
                .map(|dir| dir.join(format!("virtual-{number}.redb"))),
            attachment_file: self
                .data_dir
                .as_ref()
                .map(|dir| dir.join(format!("virtual-{number}-attachments.redb"))),
            ..template.clone()
        }
    }

    /// The public keys of virtual clients 1 to `count`, creating missing key files (for the
    /// relay to admit them as virtual clients).
    pub fn public_keys(&self, count: usize) -> anyhow::Result<Vec<PublicKey>> {
        (1..=count)
            .map(|number| {
                let path = self.key_dir.join(format!("virtual-{number}.key"));
                Ok(key_file::load_or_create(&path, rand::random)?
                    .0
                    .public_key())
            })
            .collect()
    }

    /// Starts virtual clients 1 to `count`.
    pub fn start(
        &self,
        template: &VirtualClientConfig,
        count: usize,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Vec<VirtualClient>> {
        if let Some(dir) = &self.data_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        (1..=count)
            .map(|number| start(self.config(template, number), shutdown.child_token()))
            .collect()
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM (how fly.io and systemd stop a process).
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!("cannot listen for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    shutdown.cancel();
}
