//! Counters for `GET /metrics` in the Prometheus text format.

use peerchat_shared::frames::ErrorCode;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What `/metrics` reports of an archive peer running in the relay's process (a virtual client
/// that the `peerchat-server` binary starts): the program that runs it implements this.
pub trait ArchiveStats: std::fmt::Debug + Send + Sync {
    /// Messages in its cache.
    fn cached_messages(&self) -> u64;
    /// Envelope bytes in its cache.
    fn cached_bytes(&self) -> u64;
    /// Attachments held whole in its cache.
    fn cached_attachments(&self) -> u64;
    /// Bytes taken by the attachments it keeps (or is fetching).
    fn attachment_bytes(&self) -> u64;
    /// Attachment chunks it served to peers.
    fn chunks_served(&self) -> u64;
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    connections_open: AtomicU64,
    sessions: AtomicU64,
    virtual_client_sessions: AtomicU64,
    messages_relayed: AtomicU64,
    frames_queued: AtomicU64,
    queue_overflows: AtomicU64,
    peer_bytes_forwarded: AtomicU64,
    rejections: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn set_sessions(&self, count: usize, virtual_clients: usize) {
        self.sessions.store(count as u64, Ordering::Relaxed);
        self.virtual_client_sessions
            .store(virtual_clients as u64, Ordering::Relaxed);
    }

    pub(crate) fn message_relayed(&self) {
        self.messages_relayed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn frame_queued(&self) {
        self.frames_queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn peer_bytes_forwarded(&self, bytes: usize) {
        self.peer_bytes_forwarded
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn queue_overflow(&self) {
        self.queue_overflows.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, code: ErrorCode) {
        let reason = serde_json::to_value(code)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_else(|| "other".into());
        let mut rejections = self
            .rejections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *rejections.entry(reason).or_insert(0) += 1;
    }

    /// The Prometheus text exposition of every counter, and of the in-process virtual clients.
    pub(crate) fn render(
        &self,
        queued_bytes: usize,
        virtual_clients: &[Arc<dyn ArchiveStats>],
    ) -> String {
        let mut text = String::new();
        let mut gauge = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        gauge(
            "peerchat_connections_open",
            "gauge",
            "Open WebSocket connections.",
            self.connections_open.load(Ordering::Relaxed),
        );
        gauge(
            "peerchat_sessions",
            "gauge",
            "Logged-in sessions.",
            self.sessions.load(Ordering::Relaxed),
        );
        gauge(
            "peerchat_virtual_clients_online",
            "gauge",
            "Sessions of virtual clients (role virtual), in this process or elsewhere.",
            self.virtual_client_sessions.load(Ordering::Relaxed),
        );
        gauge(
            "peerchat_virtual_client_cached_messages",
            "gauge",
            "Messages cached by the virtual clients running in this process.",
            virtual_clients
                .iter()
                .map(|stats| stats.cached_messages())
                .sum(),
        );
        gauge(
            "peerchat_virtual_client_cached_bytes",
            "gauge",
            "Envelope bytes cached by the virtual clients running in this process.",
            virtual_clients
                .iter()
                .map(|stats| stats.cached_bytes())
                .sum(),
        );
        gauge(
            "peerchat_virtual_client_cached_attachments",
            "gauge",
            "Attachments held whole by the virtual clients running in this process.",
            virtual_clients
                .iter()
                .map(|stats| stats.cached_attachments())
                .sum(),
        );
        gauge(
            "peerchat_virtual_client_attachment_bytes",
            "gauge",
            "Bytes of the attachments kept by the virtual clients running in this process.",
            virtual_clients
                .iter()
                .map(|stats| stats.attachment_bytes())
                .sum(),
        );
        gauge(
            "peerchat_virtual_client_chunks_served_total",
            "counter",
            "Attachment chunks the virtual clients running in this process served to peers.",
            virtual_clients
                .iter()
                .map(|stats| stats.chunks_served())
                .sum(),
        );
        gauge(
            "peerchat_messages_relayed_total",
            "counter",
            "Messages stamped and relayed.",
            self.messages_relayed.load(Ordering::Relaxed),
        );
        gauge(
            "peerchat_frames_queued_total",
            "counter",
            "Frames queued for delivery.",
            self.frames_queued.load(Ordering::Relaxed),
        );
        gauge(
            "peerchat_queued_bytes",
            "gauge",
            "Bytes waiting in the sessions' send queues, together.",
            queued_bytes as u64,
        );
        gauge(
            "peerchat_queue_overflows_total",
            "counter",
            "Slow consumers disconnected because their queue was full.",
            self.queue_overflows.load(Ordering::Relaxed),
        );
        gauge(
            "peerchat_peer_bytes_forwarded_total",
            "counter",
            "Bytes of peer-to-peer frames forwarded for members without a data channel.",
            self.peer_bytes_forwarded.load(Ordering::Relaxed),
        );
        let _ = writeln!(text, "# HELP peerchat_rejections_total Frames or logins refused, by error code.\n# TYPE peerchat_rejections_total counter");
        let rejections = self
            .rejections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (reason, count) in rejections.iter() {
            let _ = writeln!(
                text,
                "peerchat_rejections_total{{reason=\"{reason}\"}} {count}"
            );
        }
        text
    }
}
