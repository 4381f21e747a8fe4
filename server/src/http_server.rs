//! The HTTP accept loop. Unlike `axum::serve` it bounds what strangers can hold before a request
//! is read: at most [`HttpLimits::max_connections`] connections at a time, request headers within
//! [`HttpLimits::header_read_timeout`] and [`HttpLimits::max_header_bytes`]. On shutdown it
//! stops accepting, lets requests in progress finish, and drops what is left after
//! [`HTTP_SHUTDOWN_GRACE`]. A WebSocket leaves this loop once upgraded (its sessions have their
//! own limits and shutdown).

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// How long a shutdown waits for HTTP requests in progress.
pub(crate) const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// After a failed `accept` (out of file descriptors, say), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What HTTP connections may hold before they are upgraded or answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    /// Connections being read or answered at a time; more wait in the kernel's backlog.
    pub(crate) max_connections: usize,
    /// A connection that has not sent a request's headers within this time is closed.
    pub(crate) header_read_timeout: Duration,
    /// Largest request head (request line and headers); larger ones get 431.
    pub(crate) max_header_bytes: usize,
}

/// Serves `app` on `listener` until `shutdown` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = accept(&listener, &places) => accepted,
        };
        let Some((stream, peer, place)) = accepted else {
            continue;
        };
        let connection = serve_connection(stream, peer, app.clone(), limits, shutdown.clone());
        connections.spawn(async move {
            connection.await;
            drop(place);
        });
    }
    connections.close();
    if tokio::time::timeout(HTTP_SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!(
            "{} HTTP connections unfinished at shutdown; dropped",
            connections.len()
        );
    }
}

/// Waits for a free place, then for a connection.
async fn accept(
    listener: &TcpListener,
    places: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let place = places.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => {
            // Chat frames are small and latency matters: no Nagle delay.
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {error}");
            }
            Some((stream, peer, place))
        }
        Err(error) => {
            tracing::warn!("accept failed: {error}");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            None
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::trace!("HTTP connection from {peer} ended: {error}");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
