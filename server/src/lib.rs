//! The peerchat relay as a library: [`run`] serves one listener until the shutdown token fires.
//!
//! Routes: `GET /ws` (the protocol, docs/protocol.md), `GET /healthz`, `GET /.well-known/peerchat`,
//! `GET /metrics`, and the web client's files. Tests start it on an ephemeral loopback port.

mod client_address;
pub mod config;
mod connection;
mod http_server;
mod hub;
pub mod invites;
mod metrics;
mod rate;
mod send_queue;
mod web_assets;

pub use client_address::{InvalidTrustedProxy, TrustedProxy};
pub use config::{Admission, RelayConfig, RelayLimits};
pub use metrics::ArchiveStats;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hub::Hub;
use peerchat_shared::codec::MAX_RELAY_FRAME_BYTES;
use peerchat_shared::limits::MAX_CLIENT_FRAME_BYTES;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::set_header::SetResponseHeaderLayer;

/// WebSocket buffers, instead of tungstenite's 128 KiB. The read buffer is allocated per
/// connection (larger frames grow it while they are read); the write buffer keeps the capacity
/// of the largest frame sent, which is why relay frames are kept small (docs/protocol.md §8.1).
const SOCKET_READ_BUFFER_BYTES: usize = 2 * 1024;
const SOCKET_WRITE_BUFFER_BYTES: usize = 4 * 1024;
/// Frames above the protocol limit but below this get a `frame_too_large` error; larger ones
/// end the connection. It bounds a single WebSocket frame as well as a whole message: a frame's
/// header names its length, and one too long is refused before any of it is buffered (else
/// every socket, logged in or not, could make the relay buffer 16 MiB).
const SOCKET_MAX_MESSAGE_BYTES: usize = 16 * MAX_CLIENT_FRAME_BYTES;

/// How long a shutdown waits for sessions to deliver what is queued and say `shutting_down`.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    web_files: Arc<web_assets::WebFiles>,
    shutdown: CancellationToken,
    /// Every WebSocket session; [`run`] waits for them before it returns.
    sessions: TaskTracker,
}

/// Serves until `shutdown` is cancelled: connected clients get what is queued for them, then
/// `shutting_down` and a close frame; it returns once they have (or after [`SHUTDOWN_GRACE`]).
pub async fn run(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let http_limits = http_server::HttpLimits {
        max_connections: config.limits.max_http_connections.max(1),
        header_read_timeout: config.limits.header_read_timeout,
        max_header_bytes: config.limits.max_header_bytes.max(8 * 1024),
    };
    let web_files = match &config.web_dir {
        Some(dir) => web_assets::WebFiles::Directory(dir.clone()),
        None => web_assets::WebFiles::BuiltIn,
    };
    let sessions = TaskTracker::new();
    let state = AppState {
        hub: Hub::new(config),
        web_files: Arc::new(web_files),
        shutdown: shutdown.clone(),
        sessions: sessions.clone(),
    };
    let security_headers = [
        (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    let app = Router::new()
        .route("/ws", get(upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/.well-known/peerchat", get(well_known))
        .route("/metrics", get(metrics));
    let mut app = app.fallback(web_file).with_state(state);
    for (name, value) in security_headers {
        app = app.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    http_server::serve(listener, app, http_limits, shutdown).await;
    sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} sessions still closing after {SHUTDOWN_GRACE:?}; stopping anyway",
            sessions.len()
        );
    }
    Ok(())
}

async fn upgrade(
    upgrade: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    let client = state
        .hub
        .config
        .trusted_proxy
        .client_address(peer.ip(), &headers);
    let Some(pending) = state.hub.begin_login(client) else {
        state
            .hub
            .metrics
            .rejected(peerchat_shared::frames::ErrorCode::TooManyConnections);
        let message = "too many connections are waiting to log in; try again shortly\n";
        return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    };
    upgrade
        .read_buffer_size(SOCKET_READ_BUFFER_BYTES)
        .write_buffer_size(SOCKET_WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_RELAY_FRAME_BYTES * 2)
        .max_message_size(SOCKET_MAX_MESSAGE_BYTES)
        .max_frame_size(SOCKET_MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            let session = connection::serve(socket, state.hub, client, pending, state.shutdown);
            state.sessions.track_future(session)
        })
}

async fn web_file(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    state.web_files.respond(&method, &uri, &headers)
}

async fn well_known(State(state): State<AppState>) -> impl IntoResponse {
    let config = &state.hub.config;
    Json(serde_json::json!({
        "protocol": peerchat_shared::PROTOCOL_VERSION,
        "version": env!("CARGO_PKG_VERSION"),
        "relay_key": state.hub.relay_key,
        "url": config.public_url,
        "admission": match config.admission { Admission::Open => "open", Admission::InviteOnly => "invite_only" },
        "limits": {
            "max_client_frame_bytes": MAX_CLIENT_FRAME_BYTES,
            "max_text_bytes": peerchat_shared::limits::MAX_TEXT_BYTES,
            "max_channels_per_session": peerchat_shared::limits::MAX_CHANNELS_PER_SESSION,
            "messages_per_second": config.limits.messages_per_second,
            "message_burst": config.limits.message_burst,
            "frames_per_second": config.limits.frames_per_second,
        },
    }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.hub.metrics.render(
            state.hub.queue_budget.queued(),
            &state.hub.config.virtual_client_stats,
        ),
    )
}
