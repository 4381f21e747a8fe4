//! The tokio driver of `shared`'s [`Node`] for one virtual client: one task owns the node, the
//! relay socket (tokio-tungstenite), the WebRTC links and the caches, takes inputs from one
//! bounded queue, and carries out each output before the next input, as the browser's driver
//! does. Every attachment of a message it keeps is fetched into the attachment cache, within
//! its budget, so it can serve it after its author has left.

use crate::attachments::AttachmentCache;
use crate::cache::{Evicted, HistoryCache};
use crate::peer_links::{Outgoing, PeerLinks};
use crate::relay_socket::RelaySocket;
use crate::state_files::StateFiles;
use crate::VirtualClientStats;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::{ClientEvent, ConnectionState};
use peerchat_shared::ids::AttachmentId;
use peerchat_shared::message::VerifiedEnvelope;
use peerchat_shared::node::{MemberAction, Node, NodeInput, NodeOutput, SocketEvent};
use peerchat_shared::time::UnixMillis;
use peerchat_shared::transfer::AttachmentKey;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Inputs waiting for the driver; a relay that outruns it this far has its connection dropped.
pub(crate) const INPUT_QUEUE: usize = 4_096;
/// How often the cache drops what aged out of its window.
const EVICTION_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) fn now() -> UnixMillis {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    UnixMillis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// Everything one virtual client's task owns.
pub(crate) struct Driver {
    pub node: Node,
    pub links: PeerLinks,
    pub cache: HistoryCache,
    pub attachments: AttachmentCache,
    pub files: StateFiles,
    pub relay_url: String,
    /// `None`: every channel the relay lists.
    pub channels: Option<BTreeSet<ChannelName>>,
    pub stats: Arc<VirtualClientStats>,
    pub feed: mpsc::Sender<NodeInput>,
    socket: Option<RelaySocket>,
    joined: BTreeSet<ChannelName>,
}

impl Driver {
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one part the driver owns"
    )]
    pub(crate) fn new(
        node: Node,
        links: PeerLinks,
        cache: HistoryCache,
        attachments: AttachmentCache,
        files: StateFiles,
        relay_url: String,
        channels: Option<BTreeSet<ChannelName>>,
        stats: Arc<VirtualClientStats>,
        feed: mpsc::Sender<NodeInput>,
    ) -> Self {
        Self {
            node,
            links,
            cache,
            attachments,
            files,
            relay_url,
            channels,
            stats,
            feed,
            socket: None,
            joined: BTreeSet::new(),
        }
    }

    /// Runs until `shutdown` fires.
    pub(crate) async fn run(
        mut self,
        mut inputs: mpsc::Receiver<NodeInput>,
        shutdown: CancellationToken,
    ) {
        let keys = self.attachments.complete();
        self.node.handle(now(), NodeInput::AttachmentsHeld { keys });
        for (key, held) in self.attachments.incomplete() {
            self.node
                .handle(now(), NodeInput::FetchAttachment { key, held });
        }
        self.carry_out_outputs();
        let mut eviction = tokio::time::interval(EVICTION_INTERVAL);
        loop {
            let wait = self
                .node
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |at| {
                    Duration::from_millis(at.0.saturating_sub(now().0))
                });
            tokio::select! {
                () = shutdown.cancelled() => break,
                input = inputs.recv() => match input {
                    Some(input) => self.node.handle(now(), input),
                    None => break,
                },
                () = tokio::time::sleep(wait) => self.node.handle(now(), NodeInput::Timeout),
                _ = eviction.tick() => {
                    let evicted = self.cache.evict(now());
                    self.forget(evicted);
                    let aged_out = self.attachments.evict_older_than(self.cache.oldest_kept(now()));
                    self.stop_fetching(aged_out);
                    let stalled = self.attachments.drop_stalled(now());
                    self.stop_fetching(stalled);
                }
            }
            self.carry_out_outputs();
        }
        self.stats.online.store(false, Ordering::Relaxed);
    }

    fn carry_out_outputs(&mut self) {
        while let Some(output) = self.node.poll_output() {
            self.carry_out(output);
        }
        self.stats
            .cached_messages
            .store(self.cache.len() as u64, Ordering::Relaxed);
        self.stats
            .cached_bytes
            .store(self.cache.bytes() as u64, Ordering::Relaxed);
        self.stats
            .cached_attachments
            .store(self.attachments.complete_count() as u64, Ordering::Relaxed);
        self.stats
            .attachment_bytes
            .store(self.attachments.bytes(), Ordering::Relaxed);
    }

    fn carry_out(&mut self, output: NodeOutput) {
        match output {
            NodeOutput::OpenSocket(number) => {
                self.socket = Some(RelaySocket::open(
                    self.relay_url.clone(),
                    number,
                    self.feed.clone(),
                ));
            }
            NodeOutput::CloseSocket => self.socket = None,
            NodeOutput::Transmit(text) => self.transmit(text),
            NodeOutput::OpenLink {
                session,
                link,
                ice_servers,
                offer,
            } => self.links.open(session, link, &ice_servers, offer),
            NodeOutput::AcceptAnswer { session, answer } => self.links.accept(session, answer),
            NodeOutput::CloseLink { session } => self.links.close(session),
            NodeOutput::SendOnLink { session, text } => self.send(session, Outgoing::Text(text)),
            NodeOutput::SendBinaryOnLink {
                session,
                bytes,
                queue_limit,
            } => self.send(session, Outgoing::Binary { bytes, queue_limit }),
            NodeOutput::ReadChunk { peer, key, index } => {
                let chunk = self
                    .attachments
                    .read_chunk(key, index)
                    .unwrap_or_else(|error| {
                        tracing::error!("cannot read a chunk: {error}");
                        None
                    });
                if chunk.is_some() {
                    self.stats.chunks_served.fetch_add(1, Ordering::Relaxed);
                }
                let read = NodeInput::ChunkRead {
                    peer,
                    key,
                    index,
                    chunk,
                };
                self.node.handle(now(), read);
            }
            NodeOutput::StoreChunk {
                key,
                index,
                data,
                proof,
                ..
            } => match self.attachments.put_chunk(key, index, data, proof, now()) {
                Ok(put) => self.stop_fetching(Ok(put.evicted)),
                Err(error) => {
                    tracing::error!("cannot store a chunk: {error}");
                    self.node.handle(now(), NodeInput::CancelAttachment { key });
                }
            },
            NodeOutput::AttachmentComplete(key) => {
                tracing::debug!(size = key.size, "attachment cached")
            }
            NodeOutput::AttachmentUnavailable(key) => {
                tracing::debug!(size = key.size, "attachment unavailable for now")
            }
            NodeOutput::AttachmentDeclined(key) => {
                tracing::debug!(size = key.size, "too many attachments fetched at once");
                if let Err(error) = self.attachments.remove(key) {
                    tracing::error!("cannot drop an attachment: {error}");
                }
            }
            NodeOutput::PinRelayKey(key) => self.files.pin_relay(&key),
            NodeOutput::SaveCertificate(certificate) => {
                self.files.save_certificate(certificate.as_ref())
            }
            // A virtual client posts nothing and shows no names.
            NodeOutput::SaveProfile(_) | NodeOutput::OutboxPut(_) | NodeOutput::OutboxRemove(_) => {
            }
            NodeOutput::StoreDelivered(batch) => self.store(
                batch
                    .into_iter()
                    .map(|delivered| delivered.envelope)
                    .collect(),
            ),
            NodeOutput::StoreFromPeers { envelopes, .. } => self.store(envelopes),
            NodeOutput::ReadIds { channel } => {
                let ids = self.cache.ids(&channel);
                self.node.handle(now(), NodeInput::Ids { channel, ids });
            }
            NodeOutput::Load { peer, channel, ids } => {
                let envelopes = self.cache.get(&channel, &ids);
                self.stats
                    .envelopes_served
                    .fetch_add(envelopes.len() as u64, Ordering::Relaxed);
                let loaded = NodeInput::Loaded {
                    peer,
                    channel,
                    envelopes,
                };
                self.node.handle(now(), loaded);
            }
            NodeOutput::Event(event) => self.on_event(event),
            NodeOutput::HistoryState { channel, state } => {
                tracing::debug!(channel = channel.as_str(), ?state, "history")
            }
            NodeOutput::PeerStats(stats) => {
                self.stats
                    .data_channels_open
                    .store(stats.data_channels_open as u64, Ordering::Relaxed);
            }
            NodeOutput::PeerRefused { key, reason } => {
                tracing::warn!("peer {} refused: {reason}", key.fingerprint())
            }
        }
    }

    /// Queues a frame for the relay; a connection that is not keeping up is given up (the node
    /// reconnects).
    fn transmit(&mut self, text: String) {
        let Some(socket) = &self.socket else { return };
        if socket.frames.try_send(text).is_err() {
            tracing::warn!("the relay connection is not keeping up; reconnecting");
            let closed = NodeInput::Socket {
                socket: socket.number,
                event: SocketEvent::Closed,
            };
            // Dropped now, so the frames queued after this one are not tried on it.
            self.socket = None;
            self.node.handle(now(), closed);
        }
    }

    fn on_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Welcome { relay, .. } => {
                if let Ok(verifier) = relay.verifier() {
                    let evicted = self.cache.admit_stored(&verifier, now());
                    self.forget(evicted);
                }
            }
            ClientEvent::Connection { state, .. } => {
                tracing::debug!(?state, "relay connection");
                // The session joins its channels again itself after reconnecting.
                let online = state == ConnectionState::Online;
                self.stats.online.store(online, Ordering::Relaxed);
            }
            ClientEvent::Channels { channels, .. } if self.node.is_online() => {
                let wanted: Vec<ChannelName> = channels
                    .into_iter()
                    .map(|summary| summary.name)
                    .filter(|name| self.channels.as_ref().is_none_or(|set| set.contains(name)))
                    .filter(|name| !self.joined.contains(name))
                    .collect();
                for name in wanted {
                    self.joined.insert(name.clone());
                    let join = NodeInput::Member(MemberAction::Join(name));
                    self.node.handle(now(), join);
                }
            }
            ClientEvent::Stopped { message } => {
                tracing::error!("the relay refuses this virtual client: {message}")
            }
            ClientEvent::Problem { message, .. } => tracing::warn!("{message}"),
            _ => {}
        }
    }

    fn send(&mut self, session: peerchat_shared::frames::SessionId, message: Outgoing) {
        if let Some(link) = self.links.send(session, message) {
            self.node.handle(now(), NodeInput::link_down(session, link));
        }
    }

    /// Stores envelopes in the cache, tells the node what was evicted, and fetches the
    /// attachments of those kept.
    fn store(&mut self, envelopes: Vec<VerifiedEnvelope>) {
        match self.cache.insert(&envelopes, now()) {
            Ok((_, evicted)) => self.forget(Ok(evicted)),
            Err(error) => tracing::error!("cannot store history: {error}"),
        }
        let oldest_kept = self.cache.oldest_kept(now());
        for envelope in &envelopes {
            let envelope = envelope.envelope();
            if envelope.id.timestamp() < oldest_kept {
                continue;
            }
            for (index, attachment) in envelope.body.attachments().iter().enumerate() {
                let Some(id) = AttachmentId::of(envelope.id, index) else {
                    continue;
                };
                let key = AttachmentKey::of(attachment);
                match self.attachments.admit(key, id, now()) {
                    Ok(true) => {
                        let fetch = NodeInput::FetchAttachment { key, held: vec![] };
                        self.node.handle(now(), fetch);
                    }
                    Ok(false) => {}
                    Err(error) => tracing::error!("cannot keep an attachment: {error}"),
                }
            }
        }
    }

    fn stop_fetching(
        &mut self,
        evicted: Result<Vec<AttachmentKey>, crate::attachments::AttachmentCacheError>,
    ) {
        match evicted {
            Ok(keys) => {
                for key in keys {
                    self.node.handle(now(), NodeInput::CancelAttachment { key });
                    self.node
                        .handle(now(), NodeInput::AttachmentDropped { key });
                }
            }
            Err(error) => tracing::error!("cannot evict attachments: {error}"),
        }
    }

    fn forget(&mut self, evicted: Result<Evicted, crate::cache::CacheError>) {
        match evicted {
            Ok(evicted) => {
                for (channel, ids) in evicted {
                    self.node.handle(now(), NodeInput::Evicted { channel, ids });
                }
            }
            Err(error) => tracing::error!("cannot evict from the cache: {error}"),
        }
    }
}
