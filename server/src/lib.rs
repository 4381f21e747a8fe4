//! The peerchat relay as a library: [`run`] serves one listener until the shutdown token fires.
//!
//! So far it serves the web client's files and `GET /healthz`; login, channels and message relay
//! arrive with the relay issue. Tests start it on an ephemeral loopback port.

use axum::routing::get;
use axum::Router;
use std::path::PathBuf;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;

/// What the relay needs to run.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Folder with the built web client (`index.html`, `pkg/`).
    pub web_dir: PathBuf,
}

/// Serves until `shutdown` is cancelled, then finishes in-flight requests and returns.
pub async fn run(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .fallback_service(ServeDir::new(&config.web_dir));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}
