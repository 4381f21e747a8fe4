//! `peerchat-server`: runs the relay (default) or mints an invite link (`invite`). With the
//! cargo feature `virtual-clients` (a default), it also runs `--virtual-clients` in its process;
//! that is the only part of the relay that links the WebRTC stack.

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use peerchat_server::{invites, run, Admission, RelayConfig, RelayLimits, TrustedProxy};
use peerchat_shared::channel::ChannelName;
use peerchat_shared::frames::IceServer;
use peerchat_shared::identity::{PublicKey, SecretKey};
use peerchat_shared::key_file;
use peerchat_shared::limits::MAX_CLIENT_FRAME_BYTES;
use peerchat_shared::membership::Role;
#[cfg(feature = "virtual-clients")]
use peerchat_virtual::{Fleet, VirtualClientOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
#[cfg(feature = "virtual-clients")]
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The peerchat relay: authenticates members by their keys, stamps and relays signed messages,
/// brokers WebRTC, and stores no messages.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Options {
    /// Address and port to listen on.
    #[arg(long, env = "PEERCHAT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The relay's signing key as base64url of a 32-byte seed (for `fly secrets`). When unset,
    /// the key file is used.
    #[arg(
        long,
        env = "PEERCHAT_SIGNING_KEY",
        hide_env_values = true,
        global = true
    )]
    signing_key: Option<String>,
    /// Key file, created with a fresh key on first run. Back it up: members pin this key.
    #[arg(
        long,
        env = "PEERCHAT_KEY_FILE",
        default_value = "peerchat-data/relay.key",
        global = true
    )]
    key_file: PathBuf,
    /// Who may join: anyone, or holders of an invite or membership certificate.
    #[arg(long, env = "PEERCHAT_ADMISSION", value_enum, default_value = "open")]
    admission: Admission,
    /// Channels always listed (comma-separated).
    #[arg(
        long,
        env = "PEERCHAT_CHANNELS",
        value_delimiter = ',',
        default_value = "general"
    )]
    channels: Vec<String>,
    /// Public keys refused at login (comma-separated).
    #[arg(long, env = "PEERCHAT_BANNED", value_delimiter = ',')]
    banned: Vec<String>,
    /// Public keys that log in as owners and may mint invites (comma-separated).
    #[arg(long, env = "PEERCHAT_OWNERS", value_delimiter = ',')]
    owners: Vec<String>,
    /// STUN/TURN URLs handed to clients for WebRTC (comma-separated), e.g. stun:stun.example.org:3478.
    #[arg(long, env = "PEERCHAT_ICE_SERVERS", value_delimiter = ',')]
    ice_servers: Vec<String>,
    /// Serve the web client from this folder (a bundle as `cargo xtask web` writes it to
    /// web/dist) instead of the copy built into the binary.
    #[arg(long, env = "PEERCHAT_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// The relay's public URL (for invite links and `/.well-known/peerchat`). Unset: http:// and
    /// the listening address (127.0.0.1 for an unspecified one).
    #[arg(long, env = "PEERCHAT_PUBLIC_URL", global = true)]
    public_url: Option<String>,
    /// Where clients' addresses come from, for the per-address limits: `none` (clients connect
    /// directly), `fly` (the Fly-Client-IP header of fly.io's proxy), or the addresses or
    /// networks of your reverse proxies, comma-separated (their X-Forwarded-For is used).
    #[arg(long, env = "PEERCHAT_TRUSTED_PROXY", default_value = "none")]
    trusted_proxy: TrustedProxy,
    /// Public keys that log in as virtual clients, the operator's archive peers (comma-separated).
    #[arg(long, env = "PEERCHAT_VIRTUAL_CLIENT_KEYS", value_delimiter = ',')]
    virtual_client_keys: Vec<String>,
    /// Run this many virtual clients inside the relay's process (a one-VM deployment). A relay
    /// built without the cargo feature `virtual-clients` refuses any number above 0.
    #[arg(long, env = "PEERCHAT_VIRTUAL_CLIENTS", default_value_t = 0)]
    virtual_clients: usize,
    #[cfg(feature = "virtual-clients")]
    #[command(flatten)]
    in_process: InProcessOptions,
    #[command(flatten, next_help_heading = "Relay limits")]
    limits: LimitOptions,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where and how the `--virtual-clients` run (feature `virtual-clients`).
#[cfg(feature = "virtual-clients")]
#[derive(Debug, clap::Args)]
struct InProcessOptions {
    /// Where the in-process virtual clients keep their keys, and their caches unless
    /// `--virtual-client-memory-only`.
    #[arg(
        long,
        env = "PEERCHAT_VIRTUAL_CLIENT_DIR",
        default_value = "peerchat-data/virtual"
    )]
    virtual_client_dir: PathBuf,
    /// Keep the in-process virtual clients' caches in memory only.
    #[arg(long, env = "PEERCHAT_VIRTUAL_CLIENT_MEMORY_ONLY")]
    virtual_client_memory_only: bool,
    #[command(flatten)]
    virtual_client_tuning: VirtualClientOptions,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a join link with a fresh invite signed by this relay's key.
    Invite {
        /// How many people may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid: a number with s, m, h or d (at most 90d).
        #[arg(long, default_value = "7d", value_parser = parse_duration)]
        ttl: Duration,
        /// The role it grants.
        #[arg(long, value_enum, default_value = "member")]
        role: InviteRole,
    },
}

/// Limits an operator may tune; see docs/protocol.md section 8.1 for what each does.
#[derive(Debug, clap::Args)]
struct LimitOptions {
    /// Most logged-in sessions at once.
    #[arg(long, env = "PEERCHAT_MAX_SESSIONS", default_value_t = RelayLimits::default().max_sessions)]
    max_sessions: usize,
    /// Most sessions per member key.
    #[arg(long, env = "PEERCHAT_CONNECTIONS_PER_KEY", default_value_t = RelayLimits::default().connections_per_key)]
    connections_per_key: usize,
    /// Most sessions per client IP address.
    #[arg(long, env = "PEERCHAT_CONNECTIONS_PER_ADDRESS", default_value_t = RelayLimits::default().connections_per_address)]
    connections_per_address: usize,
    /// Sustained messages per second per key.
    #[arg(long, env = "PEERCHAT_MESSAGES_PER_SECOND", default_value_t = RelayLimits::default().messages_per_second)]
    messages_per_second: f64,
    /// Messages a key may send in a burst above the sustained rate.
    #[arg(long, env = "PEERCHAT_MESSAGE_BURST", default_value_t = RelayLimits::default().message_burst)]
    message_burst: f64,
    /// Bytes of peer frames forwarded per second per key (history for members without a data
    /// channel between them), sustained.
    #[arg(long, env = "PEERCHAT_PEER_BYTES_PER_SECOND", default_value_t = RelayLimits::default().peer_bytes_per_second)]
    peer_bytes_per_second: f64,
    /// Bytes of peer frames a key may send in a burst above the sustained rate.
    #[arg(long, env = "PEERCHAT_PEER_BURST_BYTES", default_value_t = RelayLimits::default().peer_burst_bytes)]
    peer_burst_bytes: f64,
    /// Sustained frames per second per key.
    #[arg(long, env = "PEERCHAT_FRAMES_PER_SECOND", default_value_t = RelayLimits::default().frames_per_second)]
    frames_per_second: f64,
    /// Frames a key may send in a burst above the sustained rate.
    #[arg(long, env = "PEERCHAT_FRAME_BURST", default_value_t = RelayLimits::default().frame_burst)]
    frame_burst: f64,
    /// Connections not logged in yet, in all.
    #[arg(long, env = "PEERCHAT_MAX_PENDING_LOGINS", default_value_t = RelayLimits::default().max_pending_logins)]
    max_pending_logins: usize,
    /// HTTP connections being read or answered (not yet a WebSocket) at a time.
    #[arg(long, env = "PEERCHAT_MAX_HTTP_CONNECTIONS", default_value_t = RelayLimits::default().max_http_connections)]
    max_http_connections: usize,
    /// Times a key's rates that one address (IPv4, or IPv6 /64) gets, shared by all its keys.
    #[arg(long, env = "PEERCHAT_ADDRESS_RATE_MULTIPLE", default_value_t = RelayLimits::default().address_rate_multiple)]
    address_rate_multiple: f64,
    /// Frames queued per session before it is disconnected as a slow consumer.
    #[arg(long, env = "PEERCHAT_SEND_QUEUE_FRAMES", default_value_t = RelayLimits::default().send_queue_frames)]
    send_queue_frames: usize,
    /// Bytes queued per session before it is disconnected as a slow consumer.
    #[arg(long, env = "PEERCHAT_SEND_QUEUE_BYTES", default_value_t = RelayLimits::default().send_queue_bytes)]
    send_queue_bytes: usize,
    /// Bytes all sessions' queues may hold together; past it, a session holding more than an
    /// equal share is disconnected as a slow consumer.
    #[arg(long, env = "PEERCHAT_QUEUED_BYTES_TOTAL", default_value_t = RelayLimits::default().queued_bytes_total)]
    queued_bytes_total: usize,
}

impl LimitOptions {
    fn to_limits(&self) -> RelayLimits {
        RelayLimits {
            max_sessions: self.max_sessions,
            connections_per_key: self.connections_per_key,
            connections_per_address: self.connections_per_address,
            messages_per_second: self.messages_per_second,
            message_burst: self.message_burst,
            frames_per_second: self.frames_per_second,
            frame_burst: self.frame_burst,
            peer_bytes_per_second: self.peer_bytes_per_second,
            peer_burst_bytes: self.peer_burst_bytes,
            send_queue_frames: self.send_queue_frames.max(1),
            // At least one largest frame; the total at least one queue's worth; an address at
            // least one key's rates (NaN and below 1 mean 1).
            send_queue_bytes: self.send_queue_bytes.max(MAX_CLIENT_FRAME_BYTES),
            queued_bytes_total: self.queued_bytes_total.max(self.send_queue_bytes),
            address_rate_multiple: self.address_rate_multiple.max(1.0),
            max_pending_logins: self.max_pending_logins.max(1),
            max_http_connections: self.max_http_connections.max(1),
            ..RelayLimits::default()
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum InviteRole {
    Member,
    Owner,
    /// A virtual client (archive peer).
    Virtual,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let count: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 30m, 12h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(count.saturating_mul(seconds)))
}

fn parse_keys(texts: &[String], what: &str) -> Result<Vec<PublicKey>> {
    texts
        .iter()
        .filter(|text| !text.trim().is_empty())
        .map(|text| {
            text.trim()
                .parse()
                .with_context(|| format!("{what}: {text:?} is not a public key"))
        })
        .collect()
}

/// The relay's key for signing an invite: never a new one, which no relay would accept.
fn existing_signing_key(options: &Options) -> Result<SecretKey> {
    if let Some(text) = &options.signing_key {
        return key_file::from_text(text).context("PEERCHAT_SIGNING_KEY");
    }
    key_file::load(&options.key_file).context(
        "an invite is signed with the relay's own key: give the relay's --key-file or \
         PEERCHAT_SIGNING_KEY (the relay creates its key file on its first start)",
    )
}

fn signing_key(options: &Options) -> Result<SecretKey> {
    if let Some(text) = &options.signing_key {
        return key_file::from_text(text).context("PEERCHAT_SIGNING_KEY");
    }
    let (key, created) = key_file::load_or_create(&options.key_file, rand::random)?;
    if created {
        tracing::info!(
            "created a new relay key in {} (back it up)",
            options.key_file.display()
        );
    }
    Ok(key)
}

/// `--public-url`, or the address the relay listens on as seen from this machine.
fn public_url(options: &Options, listening: SocketAddr) -> String {
    options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", reachable_here(listening)))
}

/// `address` with an unspecified IP (`0.0.0.0`, `::`) replaced by loopback.
fn reachable_here(address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        SocketAddr::new(std::net::IpAddr::from([127, 0, 0, 1]), address.port())
    } else {
        address
    }
}

fn config(options: &Options, signing_key: SecretKey, listening: SocketAddr) -> Result<RelayConfig> {
    let default_channels = options
        .channels
        .iter()
        .filter(|name| !name.trim().is_empty())
        .map(|name| ChannelName::new(name.trim()).with_context(|| format!("channel {name:?}")))
        .collect::<Result<_>>()?;
    if options.ice_servers.len() > peerchat_shared::limits::MAX_ICE_SERVERS {
        bail!(
            "at most {} ICE servers",
            peerchat_shared::limits::MAX_ICE_SERVERS
        );
    }
    let ice_servers = options
        .ice_servers
        .iter()
        .map(|url| IceServer {
            urls: vec![url.clone()],
            username: None,
            credential: None,
        })
        .collect();
    Ok(RelayConfig {
        signing_key,
        admission: options.admission,
        default_channels,
        banned: parse_keys(&options.banned, "--banned")?
            .into_iter()
            .collect(),
        owners: parse_keys(&options.owners, "--owners")?
            .into_iter()
            .collect(),
        virtual_clients: parse_keys(&options.virtual_client_keys, "--virtual-client-keys")?
            .into_iter()
            .collect(),
        virtual_client_stats: Vec::new(),
        ice_servers,
        web_dir: options.web_dir.clone(),
        public_url: Some(public_url(options, listening)),
        trusted_proxy: options.trusted_proxy.clone(),
        limits: options.limits.to_limits(),
    })
}

/// Logging when `RUST_LOG` is unset (the virtual clients' WebRTC stack logs every state change
/// at `info`, so their filter quiets it).
#[cfg(feature = "virtual-clients")]
const DEFAULT_LOG_FILTER: &str = peerchat_virtual::DEFAULT_LOG_FILTER;
#[cfg(not(feature = "virtual-clients"))]
const DEFAULT_LOG_FILTER: &str = "info";

/// Logs to stderr, filtered by `RUST_LOG` or else [`DEFAULT_LOG_FILTER`].
fn init_logging() {
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

/// Cancels `shutdown` on Ctrl-C or SIGTERM (how fly.io and systemd stop a process).
async fn cancel_on_signal(shutdown: CancellationToken) {
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

#[tokio::main]
async fn main() -> Result<()> {
    init_logging();
    let options = Options::parse();
    if let Some(Command::Invite { uses, ttl, role }) = &options.command {
        let role = match role {
            InviteRole::Member => Role::Member,
            InviteRole::Owner => Role::Owner,
            InviteRole::Virtual => Role::Virtual,
        };
        let token = invites::mint(&existing_signing_key(&options)?, role, *uses, *ttl);
        #[allow(clippy::print_stdout)]
        {
            println!(
                "{}/#invite={token}",
                public_url(&options, options.listen).trim_end_matches('/')
            );
        }
        return Ok(());
    }
    // Built without virtual clients (`--no-default-features`): refused before anything is
    // written, rather than running without the archive that the operator asked for.
    #[cfg(not(feature = "virtual-clients"))]
    if options.virtual_clients > 0 {
        bail!(
            "--virtual-clients (PEERCHAT_VIRTUAL_CLIENTS): this relay was built without the \
             cargo feature `virtual-clients`; run `peerchat-virtual` beside it \
             (docs/operating.md), or build the relay with its default features"
        );
    }
    // The key file exists before the relay listens (an invite may be minted at once).
    let signing_key = signing_key(&options)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener.local_addr()?;
    let mut config = config(&options, signing_key, address)?;
    fit_open_files(&mut config.limits);
    let shutdown = CancellationToken::new();
    #[cfg(feature = "virtual-clients")]
    if options.virtual_clients > 0 {
        start_virtual_clients(&options, &mut config, address, &shutdown)?;
    }
    tracing::info!(
        "peerchat relay {} listening on {address} (relay key {})",
        env!("CARGO_PKG_VERSION"),
        config.signing_key.public_key()
    );
    tracing::info!("open http://{} in a browser", reachable_here(address));
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run(listener, config, shutdown).await?;
    tracing::info!("peerchat relay stopped");
    Ok(())
}

/// Raises this process's open-files limit as far as allowed (systemd's default soft limit is
/// 1,024), then fits the session limit to it, so a connection is refused by a limit, with a
/// message, rather than by running out of file descriptors.
fn fit_open_files(limits: &mut RelayLimits) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(open_files) => {
            if let Some(warning) = limits.fit_open_files(open_files) {
                tracing::warn!("{warning}");
            }
        }
        Err(error) => tracing::warn!("cannot read or raise the open-files limit: {error}"),
    }
}

/// A virtual client's health as `/metrics` reports it.
#[cfg(feature = "virtual-clients")]
#[derive(Debug)]
struct InProcessArchive(Arc<peerchat_virtual::VirtualClientStats>);

#[cfg(feature = "virtual-clients")]
impl peerchat_server::ArchiveStats for InProcessArchive {
    fn cached_messages(&self) -> u64 {
        self.0.cached_messages()
    }

    fn cached_bytes(&self) -> u64 {
        self.0.cached_bytes()
    }

    fn cached_attachments(&self) -> u64 {
        self.0.cached_attachments()
    }

    fn attachment_bytes(&self) -> u64 {
        self.0.attachment_bytes()
    }

    fn chunks_served(&self) -> u64 {
        self.0.chunks_served()
    }
}

/// Starts `--virtual-clients` virtual clients against this relay (on loopback), admits their
/// keys as virtual clients, and reports their health in `/metrics`.
#[cfg(feature = "virtual-clients")]
fn start_virtual_clients(
    options: &Options,
    config: &mut RelayConfig,
    address: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<()> {
    let in_process = &options.in_process;
    let fleet = Fleet {
        key_dir: in_process.virtual_client_dir.clone(),
        data_dir: (!in_process.virtual_client_memory_only)
            .then(|| in_process.virtual_client_dir.clone()),
    };
    std::fs::create_dir_all(&fleet.key_dir)
        .with_context(|| format!("cannot create {}", fleet.key_dir.display()))?;
    config
        .virtual_clients
        .extend(fleet.public_keys(options.virtual_clients)?);
    let relay_url = format!("ws://{}/ws", reachable_here(address));
    let template = in_process
        .virtual_client_tuning
        .template(relay_url, None, None);
    let clients = fleet.start(&template, options.virtual_clients, shutdown)?;
    tracing::info!("{} virtual clients started", clients.len());
    config.virtual_client_stats = clients
        .into_iter()
        .map(|client| {
            Arc::new(InProcessArchive(client.stats)) as Arc<dyn peerchat_server::ArchiveStats>
        })
        .collect();
    Ok(())
}
