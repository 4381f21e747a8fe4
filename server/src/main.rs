//! `peerchat-server`: parses the command line and runs the relay until Ctrl-C or SIGTERM.

use anyhow::Context as _;
use clap::Parser;
use peerchat_server::{run, RelayConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// The peerchat relay.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Options {
    /// Address and port to listen on.
    #[arg(long, env = "PEERCHAT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Folder holding the built web client.
    #[arg(long, env = "PEERCHAT_WEB_DIR", default_value = "web")]
    web_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = Options::parse();
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    tracing::info!(
        "peerchat relay listening on http://{}",
        listener.local_addr()?
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run(
        listener,
        RelayConfig {
            web_dir: options.web_dir,
        },
        shutdown,
    )
    .await?;
    tracing::info!("peerchat relay stopped");
    Ok(())
}

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
