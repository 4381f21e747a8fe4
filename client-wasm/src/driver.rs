//! The browser driver of `shared`'s [`Node`]: one task owns the node, the WebSocket and the
//! WebRTC links, takes inputs (socket and link events, the member's actions, timers) from one
//! bounded queue, and carries out each output before the next input, writing to IndexedDB
//! before the page is told. The UI gets plain JavaScript objects through one callback.

use crate::attachment_store::{AttachmentRecord, RoomError, DEFAULT_STORAGE_LIMIT};
use crate::attachments::{matches_description, Download, Downloads};
use crate::history_writer::{write_history, HistoryWork};
use crate::identity_store::{random_bytes, IdentityStore};
use crate::indexeddb::IndexedDbStore;
use crate::page::{
    AttachmentForPage, EventSink, HistoryStateForPage, MessageEventForPage, PeersForPage,
};
use crate::peer_links::PeerLinks;
use crate::relay_socket::Socket;
use futures_channel::mpsc;
use futures_util::future::{poll_fn, select, Either};
use futures_util::StreamExt as _;
use peerchat_shared::client::{ClientEvent, MessageView};
use peerchat_shared::encoding::to_base64url;
use peerchat_shared::message::VerifiedEnvelope;
use peerchat_shared::node::{Delivered, Node, NodeInput, NodeOutput, SocketEvent, SocketNumber};
use peerchat_shared::store::HistoryStore as _;
use peerchat_shared::time::UnixMillis;
use peerchat_shared::transfer::AttachmentKey;
use serde::Serialize;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// Inputs waiting for the node. A relay that outruns the page this far gets its connection
/// closed (and reconnected), as the relay does with a slow reader.
pub const INPUT_QUEUE: usize = 4_096;
/// Most queued frames handed to the node before its outputs are carried out.
const FRAMES_PER_BATCH: usize = 256;
/// Batches of peer history waiting to be written while the driver verifies the next ones.
const HISTORY_WRITES_AHEAD: usize = 4;
/// A download's progress is reported at most this often (ms).
const PROGRESS_INTERVAL_MILLIS: f64 = 250.0;
/// Attachments up to this size of the messages the relay delivers are fetched at once, so a
/// photo spreads through the channel as it is posted (docs/protocol.md §10.6); larger ones,
/// and those of history from peers, when the member opens them.
pub(crate) const FETCH_AT_ONCE_BYTES: u64 = 2 * 1024 * 1024;

/// What the driver task is fed: the node's inputs, and word that a socket overflowed.
#[derive(Debug)]
pub(crate) enum Feed {
    Input(NodeInput),
    /// The socket could not queue an input: drop the connection.
    SocketOverflow(SocketNumber),
    /// The member opened an attachment: fetch what is missing of it.
    Download(AttachmentRecord),
    CancelDownload(AttachmentKey),
    /// The member changed the storage limit for attachments.
    StorageLimit(u64),
}

pub(crate) fn now() -> UnixMillis {
    UnixMillis(js_sys::Date::now() as u64)
}

/// Everything the driver task owns.
pub(crate) struct Driver {
    node: Node,
    links: PeerLinks,
    relay_url: String,
    history: Rc<IndexedDbStore>,
    identity: Rc<IdentityStore>,
    sink: EventSink,
    feed: mpsc::Sender<Feed>,
    history_writes: mpsc::Sender<HistoryWork>,
    socket: Option<Socket>,
    downloads: Downloads,
    storage_limit: u64,
}

impl Driver {
    pub(crate) fn new(
        node: Node,
        relay_url: String,
        history: Rc<IndexedDbStore>,
        identity: Rc<IdentityStore>,
        sink: EventSink,
        feed: mpsc::Sender<Feed>,
    ) -> Self {
        let (history_writes, work) = mpsc::channel(HISTORY_WRITES_AHEAD);
        wasm_bindgen_futures::spawn_local(write_history(history.clone(), sink.clone(), work));
        Self {
            node,
            links: PeerLinks::new(feed.clone()),
            relay_url,
            history,
            identity,
            sink,
            feed,
            history_writes,
            socket: None,
            downloads: Downloads::new(),
            storage_limit: DEFAULT_STORAGE_LIMIT,
        }
    }

    /// Runs until the page drops every sender (the client is freed).
    pub(crate) async fn run(mut self, mut inputs: mpsc::Receiver<Feed>) {
        self.resume_downloads().await;
        self.carry_out_outputs().await;
        loop {
            let next = match self.node.poll_timeout() {
                // Due already: first, so that a steady stream of inputs cannot hold it off.
                Some(at) if at <= now() => Some(Feed::Input(NodeInput::Timeout)),
                Some(at) => {
                    let wait = at.0.saturating_sub(now().0).min(u64::from(u32::MAX / 2));
                    let timer = gloo_timers::future::TimeoutFuture::new(wait as u32);
                    match select(inputs.next(), timer).await {
                        Either::Left((feed, _)) => feed,
                        Either::Right(((), _)) => Some(Feed::Input(NodeInput::Timeout)),
                    }
                }
                None => inputs.next().await,
            };
            let Some(feed) = next else { break };
            self.on_feed(feed).await;
            let held_back = self.take_queued_frames(&mut inputs);
            self.carry_out_outputs().await;
            if let Some(feed) = held_back {
                self.on_feed(feed).await;
                self.carry_out_outputs().await;
            }
        }
        self.socket = None;
    }

    async fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Download(record) => self.download(record).await,
            Feed::CancelDownload(key) => {
                if let Some(download) = self.downloads.remove(&key) {
                    self.node.handle(now(), NodeInput::CancelAttachment { key });
                    self.report(&download, "cancelled", None);
                }
            }
            Feed::StorageLimit(bytes) => self.storage_limit = bytes,
            Feed::Input(input) => self.node.handle(now(), input),
            Feed::SocketOverflow(number) => {
                if self
                    .socket
                    .as_ref()
                    .is_some_and(|socket| socket.number == number)
                {
                    self.sink.problem(
                        "The relay sent more than this page could take; reconnecting.".into(),
                    );
                    self.close_socket(number);
                }
            }
        }
    }

    fn close_socket(&mut self, socket: SocketNumber) {
        let event = SocketEvent::Closed;
        self.node.handle(now(), NodeInput::Socket { socket, event });
    }

    /// Hands the node the frames already waiting (at most [`FRAMES_PER_BATCH`]), so that the
    /// messages among them are stored in one IndexedDB transaction. Returns the first other
    /// input met, to be handled after.
    fn take_queued_frames(&mut self, inputs: &mut mpsc::Receiver<Feed>) -> Option<Feed> {
        for _ in 0..FRAMES_PER_BATCH {
            match inputs.try_recv() {
                Ok(Feed::Input(frame @ NodeInput::Socket { .. })) => self.node.handle(now(), frame),
                Ok(other) => return Some(other),
                Err(_) => return None,
            }
        }
        None
    }

    /// Carries out the node's outputs in order.
    async fn carry_out_outputs(&mut self) {
        while let Some(output) = self.node.poll_output() {
            if let Err(message) = self.carry_out(output).await {
                self.sink
                    .problem(format!("This browser could not save data: {message}"));
            }
        }
    }

    async fn carry_out(&mut self, output: NodeOutput) -> Result<(), String> {
        match output {
            NodeOutput::OpenSocket(number) => {
                match Socket::open(&self.relay_url, number, &self.feed) {
                    Ok(socket) => self.socket = Some(socket),
                    Err(_) => {
                        self.sink
                            .problem(format!("Cannot open {}.", self.relay_url));
                        self.close_socket(number);
                    }
                }
            }
            NodeOutput::CloseSocket => self.socket = None,
            NodeOutput::Transmit(text) => {
                if let Some(socket) = &self.socket {
                    // A failed send shows up as the socket closing.
                    let _ = socket.web_socket.send_with_str(&text);
                }
            }
            NodeOutput::OpenLink {
                session,
                link,
                ice_servers,
                offer,
            } => {
                if !self.links.open(session, link, &ice_servers, offer) {
                    self.node.handle(now(), NodeInput::link_down(session, link));
                }
            }
            NodeOutput::AcceptAnswer { session, answer } => self.links.accept(session, answer),
            NodeOutput::CloseLink { session } => self.links.close(session),
            NodeOutput::SendOnLink { session, text } => {
                if let Some(link) = self.links.send(session, &text) {
                    self.node.handle(now(), NodeInput::link_down(session, link));
                }
            }
            NodeOutput::SendBinaryOnLink {
                session,
                bytes,
                queue_limit,
            } => {
                if let Some(link) = self.links.send_binary(session, &bytes, queue_limit) {
                    self.node.handle(now(), NodeInput::link_down(session, link));
                }
            }
            NodeOutput::ReadChunk { peer, key, index } => {
                // Always answered: a chunk that cannot be read is one not held.
                let chunk = self.history.read_chunk(&key, index).await.unwrap_or(None);
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
                from,
            } => self.store_chunk(key, index, &data, &proof, from).await,
            NodeOutput::AttachmentComplete(key) => self.finish_download(key).await,
            NodeOutput::AttachmentUnavailable(key) => {
                if let Some(download) = self.downloads.get_mut(&key) {
                    download.state = "unavailable";
                    let download = &self.downloads[&key];
                    self.report(download, "unavailable", None);
                }
            }
            NodeOutput::PinRelayKey(key) => {
                self.identity
                    .check_relay_key(&self.relay_url, &key)
                    .await
                    .map_err(|error| error.to_string())?;
            }
            NodeOutput::SaveCertificate(certificate) => self
                .history
                .save_certificate(certificate.as_ref())
                .await
                .map_err(|error| error.to_string())?,
            NodeOutput::SaveProfile(profile) => self
                .history
                .save_profile(&profile)
                .await
                .map_err(|error| error.to_string())?,
            NodeOutput::OutboxPut(entry) => self
                .history
                .outbox_put(&entry)
                .await
                .map_err(|error| error.to_string())?,
            NodeOutput::OutboxRemove(nonce) => self
                .history
                .outbox_remove(&nonce)
                .await
                .map_err(|error| error.to_string())?,
            NodeOutput::StoreDelivered(batch) => self.store_delivered(batch).await?,
            NodeOutput::StoreFromPeers {
                channel, envelopes, ..
            } => {
                self.hand_to_writer(HistoryWork::Store { channel, envelopes })
                    .await
            }
            NodeOutput::ReadIds { channel } => {
                let ids = self
                    .history
                    .ids(&channel)
                    .await
                    .map_err(|error| error.to_string())?;
                self.node.handle(now(), NodeInput::Ids { channel, ids });
            }
            NodeOutput::Load { peer, channel, ids } => {
                let envelopes = self
                    .history
                    .get(&channel, &ids)
                    .await
                    .map_err(|error| error.to_string())?;
                let loaded = NodeInput::Loaded {
                    peer,
                    channel,
                    envelopes,
                };
                self.node.handle(now(), loaded);
            }
            NodeOutput::Event(event) => self.on_event(event).await?,
            NodeOutput::HistoryState { channel, state } => {
                self.emit_after_history(&HistoryStateForPage {
                    kind: "history_state",
                    channel: &channel,
                    state,
                })
                .await
            }
            NodeOutput::PeerStats(stats) => {
                self.emit_after_history(&PeersForPage {
                    kind: "peers",
                    stats,
                })
                .await
            }
            NodeOutput::PeerRefused { key, reason } => {
                self.emit_after_history(&ClientEvent::Problem {
                    code: None,
                    message: format!(
                        "A peer ({}) sent history that does not check out and was disconnected: {reason}.",
                        key.fingerprint()
                    ),
                })
                .await
            }
        }
        Ok(())
    }

    /// Hands `work` to [`write_history`], waiting while it is [`HISTORY_WRITES_AHEAD`] behind.
    async fn hand_to_writer(&mut self, work: HistoryWork) {
        let writer = &mut self.history_writes;
        if poll_fn(|context| writer.poll_ready(context)).await.is_ok() {
            // Ready was just reported and this task is the only sender.
            let _ = writer.start_send(work);
        }
    }

    async fn emit_after_history(&mut self, event: &impl Serialize) {
        if let Some(value) = EventSink::to_value(event) {
            self.hand_to_writer(HistoryWork::Event(value)).await;
        }
    }

    /// Stores what the relay delivered in one transaction, clears acknowledged messages from
    /// the outbox, then tells the page about each.
    async fn store_delivered(&mut self, batch: Vec<Delivered>) -> Result<(), String> {
        let (envelopes, acknowledged): (Vec<VerifiedEnvelope>, Vec<bool>) = batch
            .into_iter()
            .map(|delivered| (delivered.envelope, delivered.acknowledged))
            .unzip();
        self.history
            .insert(&envelopes)
            .await
            .map_err(|error| error.to_string())?;
        for (envelope, acknowledged) in envelopes.iter().zip(acknowledged) {
            let view = MessageView::from(envelope.envelope());
            if acknowledged {
                self.history
                    .outbox_remove(&view.nonce)
                    .await
                    .map_err(|error| error.to_string())?;
            }
            // The page ignores a message it already shows.
            self.sink.emit(&MessageEventForPage {
                kind: "message",
                message: &view,
                acknowledged,
            });
        }
        for envelope in &envelopes {
            let small = envelope
                .envelope()
                .body
                .attachments()
                .iter()
                .filter(|attachment| attachment.size <= FETCH_AT_ONCE_BYTES);
            for attachment in small {
                self.download(AttachmentRecord {
                    attachment: attachment.clone(),
                    own: false,
                    opened_at: 0,
                    complete: false,
                    verified: None,
                })
                .await;
            }
        }
        Ok(())
    }

    async fn on_event(&mut self, event: ClientEvent) -> Result<(), String> {
        if let ClientEvent::Channels { joined, .. } = &event {
            // What the member is in, not what the relay lists: anyone can make a channel
            // appear in the list.
            self.history
                .save_known_channels(joined)
                .await
                .map_err(|error| error.to_string())?;
        }
        self.sink.emit(&event);
        Ok(())
    }
}

impl Driver {
    /// Fetches again what was being fetched when the page last closed.
    async fn resume_downloads(&mut self) {
        if let Ok(Some(limit)) = self.history.storage_limit().await {
            self.storage_limit = limit;
        }
        let records = self.history.attachments().await.unwrap_or_default();
        for record in records.into_iter().filter(|record| !record.complete) {
            self.download(record).await;
        }
    }

    /// Takes room for the attachment, then asks the node for the chunks not stored yet.
    async fn download(&mut self, mut record: AttachmentRecord) {
        let key = record.key();
        if let Some(download) = self.downloads.get(&key) {
            // Opened while fetching already (its small size had it fetched at once).
            return self.report(download, download.state, None);
        }
        if let Ok(Some(stored)) = self.history.attachment(&key).await {
            record.own = stored.own;
            record.complete = stored.complete;
            record.verified = stored.verified;
        }
        record.opened_at = js_sys::Date::now() as u64;
        let keep: Vec<AttachmentKey> = self.downloads.keys().copied().collect();
        let room = self
            .history
            .make_room(&record, self.storage_limit, &keep)
            .await;
        let mut download = Download::new(record);
        if let Err(error) = room {
            let state = match error {
                RoomError::Full { .. } => "no_room",
                RoomError::Store(_) => "failed",
            };
            return self.report(&download, state, Some(&error.to_string()));
        }
        if download.record.complete {
            download.held = download.total();
            let state = match download.record.verified {
                Some(false) => "mismatch",
                _ => "ready",
            };
            return self.report(&download, state, None);
        }
        let held = self.history.held_chunks(&key).await.unwrap_or_default();
        download.held = held.len() as u64;
        self.report(&download, "fetching", None);
        self.downloads.insert(key, download);
        self.node
            .handle(now(), NodeInput::FetchAttachment { key, held });
    }

    async fn store_chunk(
        &mut self,
        key: AttachmentKey,
        index: u64,
        data: &[u8],
        proof: &[peerchat_shared::chunk_tree::Hash],
        from: peerchat_shared::identity::PublicKey,
    ) {
        if !self.downloads.contains_key(&key) {
            return;
        }
        if let Err(error) = self.history.put_chunks(&key, &[(index, data, proof)]).await {
            self.node.handle(now(), NodeInput::CancelAttachment { key });
            if let Some(download) = self.downloads.remove(&key) {
                self.report(&download, "failed", Some(&error.to_string()));
            }
            return;
        }
        let time = js_sys::Date::now();
        let Some(download) = self.downloads.get_mut(&key) else {
            return;
        };
        download.held += 1;
        download.state = "fetching";
        download.bytes += data.len() as u64;
        download.senders.insert(from);
        download.started_at.get_or_insert(time);
        if time - download.reported_at >= PROGRESS_INTERVAL_MILLIS {
            download.reported_at = time;
            let download = &self.downloads[&key];
            self.report(download, "fetching", None);
        }
    }

    /// Checks a complete file against its description and tells the page.
    async fn finish_download(&mut self, key: AttachmentKey) {
        let Some(mut download) = self.downloads.remove(&key) else {
            return;
        };
        let verified = matches_description(&self.history, &download.record)
            .await
            .unwrap_or(false);
        download.record.complete = true;
        download.record.verified = Some(verified);
        download.held = download.total();
        let saved = self.history.put_attachment(&download.record).await;
        let state = if verified { "ready" } else { "mismatch" };
        let message = saved.err().map(|error| error.to_string());
        self.report(&download, state, message.as_deref());
    }

    fn report(&self, download: &Download, state: &'static str, message: Option<&str>) {
        let key = download.record.key();
        self.sink.emit(&AttachmentForPage {
            kind: "attachment",
            root: to_base64url(&key.root),
            size: key.size,
            state,
            held: download.held,
            total: download.total(),
            peers: download
                .senders
                .iter()
                .map(|key| key.fingerprint())
                .collect(),
            bytes_per_second: download.rate(js_sys::Date::now()),
            message,
        });
    }
}

/// A fresh nonce for a message.
pub(crate) fn fresh_nonce() -> Result<peerchat_shared::message::ClientNonce, JsError> {
    Ok(peerchat_shared::message::ClientNonce(
        random_bytes().map_err(|error| JsError::new(&error.to_string()))?,
    ))
}
