//! The `peerchat-virtual` command: runs one or more virtual clients against a relay until Ctrl-C
//! or SIGTERM. `src/main.rs` runs it; the relay's tests run it in a process of their own
//! (server/tests/virtual_clients/binary.rs), as the binary.

use crate::{Fleet, VirtualClientOptions};
use anyhow::{Context as _, Result};
use clap::Parser;
use peerchat_shared::channel::ChannelName;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Headless peerchat members that keep recent history and serve it to newcomers when no member
/// can. The relay must admit their keys as virtual clients (`peerchat-server
/// --virtual-client-keys`) or they must hold an invite of role `virtual`.
#[derive(Debug, Parser)]
#[command(name = "peerchat-virtual", version, about)]
struct Options {
    /// The relay's WebSocket URL.
    #[arg(long, env = "PEERCHAT_RELAY", default_value = "ws://127.0.0.1:8080/ws")]
    relay: String,
    /// How many virtual clients to run, each with its own key.
    #[arg(long, env = "PEERCHAT_VIRTUAL_COUNT", default_value_t = 1)]
    count: usize,
    /// Folder of the key files (`virtual-<n>.key`, created on first run).
    #[arg(
        long,
        env = "PEERCHAT_VIRTUAL_KEY_DIR",
        default_value = "peerchat-virtual"
    )]
    key_dir: PathBuf,
    /// Keep each cache in a file here (`virtual-<n>.redb`) so it survives a restart; without
    /// it, caches live in memory.
    #[arg(long, env = "PEERCHAT_VIRTUAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// An invite link or token of role `virtual`, for the first login.
    #[arg(long, env = "PEERCHAT_VIRTUAL_INVITE")]
    invite: Option<String>,
    /// Channels to keep (comma-separated); all the relay lists when unset.
    #[arg(long, env = "PEERCHAT_VIRTUAL_CHANNELS", value_delimiter = ',')]
    channels: Vec<String>,
    #[command(flatten)]
    tuning: VirtualClientOptions,
}

fn parse_invite(text: &str) -> Result<peerchat_shared::membership::InviteToken> {
    let token = text
        .rsplit_once("#invite=")
        .map_or(text, |(_, token)| token);
    token
        .trim()
        .parse()
        .context("--invite is not an invite link or token")
}

fn channels(names: &[String]) -> Result<Option<BTreeSet<ChannelName>>> {
    if names.is_empty() {
        return Ok(None);
    }
    let channels = names
        .iter()
        .map(|name| ChannelName::new(name.trim()).with_context(|| format!("channel {name:?}")))
        .collect::<Result<_>>()?;
    Ok(Some(channels))
}

/// Parses `args` (the program's name first) as the command line, sets up logging and runs
/// until Ctrl-C or SIGTERM.
pub fn main(args: impl IntoIterator<Item = OsString>) -> Result<()> {
    crate::init_logging();
    let options = Options::parse_from(args);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(run(options))
}

async fn run(options: Options) -> Result<()> {
    let invite = options.invite.as_deref().map(parse_invite).transpose()?;
    let template =
        options
            .tuning
            .template(options.relay.clone(), invite, channels(&options.channels)?);
    let fleet = Fleet {
        key_dir: options.key_dir.clone(),
        data_dir: options.data_dir.clone(),
    };
    let shutdown = CancellationToken::new();
    let clients = fleet.start(&template, options.count, &shutdown)?;
    for client in &clients {
        tracing::info!("virtual client {} started", client.public_key);
    }
    crate::cancel_on_signal(shutdown.clone()).await;
    for client in clients {
        let _ = client.task.await;
    }
    Ok(())
}
