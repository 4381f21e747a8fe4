//! The browser driver of `shared`'s [`Node`]: one task owns the node, the WebSocket and the
//! WebRTC links, takes inputs (socket and link events, the member's actions, timers) from one
//! bounded queue, and carries out each output before the next input, writing to IndexedDB
//! before the page is told. The UI gets plain JavaScript objects through one callback.

use crate::attachment_store::{rank, AttachmentRecord, Rank, DEFAULT_STORAGE_LIMIT};
use crate::attachments::{Download, Downloads};
use crate::chunk_writer::{write_chunks, ChunkWork};
use crate::history_writer::{write_history, HistoryWork};
use crate::identity_store::{random_bytes, IdentityStore};
use crate::indexeddb::IndexedDbStore;
use crate::page::{
    AttachmentForPage, EventSink, HistoryStateForPage, MessageEventForPage, PeersForPage,
};
use crate::peer_links::PeerLinks;
use crate::relay_socket::Socket;
use futures_channel::{mpsc, oneshot};
use futures_util::future::{select, Either};
use futures_util::SinkExt as _;
use futures_util::StreamExt as _;
use peerchat_shared::chunk_tree::chunk_count;
use peerchat_shared::client::{ClientEvent, MessageView};
use peerchat_shared::encoding::to_base64url;
use peerchat_shared::message::{Sha256Digest, VerifiedEnvelope};
use peerchat_shared::node::{Delivered, Node, NodeInput, NodeOutput, SocketEvent, SocketNumber};
use peerchat_shared::store::HistoryStore as _;
use peerchat_shared::time::UnixMillis;
use peerchat_shared::transfer::{AttachmentKey, AutomaticFetches, OrderedDigests, Room};
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
/// Chunks waiting to be written while the driver receives the next ones (4 MiB).
const CHUNK_WRITES_AHEAD: usize = 128;
/// A download's progress is reported at most this often (ms).
const PROGRESS_INTERVAL_MILLIS: f64 = 250.0;
/// Attachments up to this size of the messages the relay delivers are fetched at once, so a
/// photo spreads through the channel as it is posted (docs/protocol.md §10.6); larger ones,
/// and those of history from peers, when the member opens them. The member may choose
/// another size in You, up to [`MAX_AUTOMATIC_FETCH_BYTES`] (0: only what they open).
pub(crate) const DEFAULT_AUTOMATIC_FETCH_BYTES: u64 = 2 * 1024 * 1024;
pub(crate) const MAX_AUTOMATIC_FETCH_BYTES: u64 = 64 * 1024 * 1024;
/// What one author's files may take of the fetches the driver starts itself, at once and again
/// every ten minutes ([`AutomaticFetches`]), in files of the automatic size: 32 MiB by
/// default, a few dozen photos.
const AUTOMATIC_FILES_PER_AUTHOR: u64 = 16;
/// Downloads the driver starts itself (files within the automatic size) at once, at most;
/// the others are fetched when the member opens them.
const AUTOMATIC_DOWNLOADS: usize = 16;

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
    /// The size up to which files are fetched as their messages arrive.
    AutomaticFetchLimit(u64),
    /// What the attachments take, and the size fetched as messages arrive.
    StorageUse(oneshot::Sender<StorageUse>),
    /// An upload about to store its chunks: keep room for it, or say why there is none.
    ReserveUpload {
        record: AttachmentRecord,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// An upload has stored all of its chunks (`stored`), or given up.
    UploadDone {
        key: AttachmentKey,
        stored: bool,
    },
    /// The SHA-256 of a completed download's bytes (`None`: a chunk was missing).
    Checked {
        key: AttachmentKey,
        sha256: Option<Sha256Digest>,
    },
    /// Chunks of `key` could not be written.
    ChunkNotStored {
        key: AttachmentKey,
        message: String,
    },
}

/// What [`Feed::StorageUse`] answers.
#[derive(Debug)]
pub(crate) struct StorageUse {
    /// Bytes the attachments kept take.
    pub(crate) used: u64,
    pub(crate) automatic_fetch: u64,
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
    chunk_writes: mpsc::Sender<ChunkWork>,
    socket: Option<Socket>,
    downloads: Downloads,
    /// The SHA-256 of downloads taken as their chunks arrive, so most need no read-back.
    digests: OrderedDigests,
    room: Room<Rank>,
    /// Files of messages the relay delivers up to this size are fetched at once, within each
    /// author's budget.
    automatic_fetch_bytes: u64,
    automatic_fetches: AutomaticFetches,
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
        let (chunk_writes, chunk_work) = mpsc::channel(CHUNK_WRITES_AHEAD);
        wasm_bindgen_futures::spawn_local(write_chunks(history.clone(), feed.clone(), chunk_work));
        Self {
            node,
            links: PeerLinks::new(feed.clone()),
            relay_url,
            history,
            identity,
            sink,
            feed,
            history_writes,
            chunk_writes,
            socket: None,
            downloads: Downloads::new(),
            digests: OrderedDigests::default(),
            room: Room::new(DEFAULT_STORAGE_LIMIT),
            automatic_fetch_bytes: DEFAULT_AUTOMATIC_FETCH_BYTES,
            automatic_fetches: AutomaticFetches::new(
                AUTOMATIC_FILES_PER_AUTHOR * DEFAULT_AUTOMATIC_FETCH_BYTES,
            ),
        }
    }

    /// Runs until the page drops every sender (the client is freed).
    pub(crate) async fn run(mut self, mut inputs: mpsc::Receiver<Feed>) {
        self.load_attachments().await;
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
            Feed::Download(record) => self.download(record, false).await,
            Feed::CancelDownload(key) => self.stop_download(key, "cancelled", None),
            Feed::StorageLimit(bytes) => {
                let dropped = self.room.set_limit(bytes);
                self.delete_attachments(dropped).await;
            }
            Feed::AutomaticFetchLimit(bytes) => self.set_automatic_fetch_bytes(bytes),
            Feed::StorageUse(reply) => {
                let _ = reply.send(StorageUse {
                    used: self.room.used(),
                    automatic_fetch: self.automatic_fetch_bytes,
                });
            }
            Feed::ReserveUpload { record, reply } => {
                let _ = reply.send(self.reserve_upload(record).await);
            }
            Feed::UploadDone { key, stored } => self.upload_done(key, stored).await,
            Feed::Checked { key, sha256 } => self.checked(key, sha256).await,
            Feed::ChunkNotStored { key, message } => {
                self.stop_download(key, "failed", Some(&message))
            }
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
                // Read beside the driver (the node bounds how many at once) and always
                // answered: a chunk that cannot be read is one not held.
                let history = self.history.clone();
                let mut feed = self.feed.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let chunk = history.read_chunk(&key, index).await.unwrap_or(None);
                    let read = NodeInput::ChunkRead {
                        peer,
                        key,
                        index,
                        chunk,
                    };
                    let _ = feed.send(Feed::Input(read)).await;
                });
            }
            NodeOutput::StoreChunk {
                key,
                index,
                data,
                proof,
                from,
            } => self.store_chunk(key, index, data, proof, from).await,
            NodeOutput::AttachmentComplete(key) => self.finish_download(key).await,
            NodeOutput::AttachmentUnavailable(key) => {
                if let Some(download) = self.downloads.get_mut(&key) {
                    download.state = "unavailable";
                    let download = &self.downloads[&key];
                    self.report(download, "unavailable", None);
                }
            }
            NodeOutput::AttachmentDeclined(key) => self.stop_download(key, "declined", None),
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
        // Fails only once the writer has ended, with the page.
        let _ = self.history_writes.send(work).await;
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
            let author = envelope.envelope().author;
            let small: Vec<_> = envelope
                .envelope()
                .body
                .attachments()
                .iter()
                .filter(|attachment| attachment.size <= self.automatic_fetch_bytes)
                .filter(|attachment| self.automatic_fetches.allow(author, attachment.size, now()))
                .collect();
            for attachment in small {
                let record = AttachmentRecord {
                    opened_at: 0,
                    ..AttachmentRecord::described(attachment.clone(), false)
                };
                self.download(record, true).await;
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
    /// Counts what the store holds within the member's limit, tells the node what it may
    /// serve, and fetches again what was being fetched when the page last closed. An upload
    /// left unfinished, and a file fetched without being opened of which nothing came, are
    /// deleted.
    async fn load_attachments(&mut self) {
        if let Ok(Some(limit)) = self.history.storage_limit().await {
            self.room.set_limit(limit);
        }
        if let Ok(Some(bytes)) = self.history.automatic_fetch_limit().await {
            self.set_automatic_fetch_bytes(bytes.min(MAX_AUTOMATIC_FETCH_BYTES));
        }
        let records = self.history.attachments().await.unwrap_or_default();
        let mut held_whole = Vec::new();
        let mut resume = Vec::new();
        let mut leftovers = Vec::new();
        for record in records {
            let key = record.key();
            let held = if record.complete {
                Vec::new()
            } else {
                self.history.held_chunks(&key).await.unwrap_or_default()
            };
            if record.complete {
                held_whole.push(key);
            } else if record.own || (held.is_empty() && record.opened_at == 0) {
                leftovers.push(key);
                continue;
            } else {
                resume.push(record.clone());
            }
            self.room
                .insert(key, rank(&record), record.stored_bytes(held.len() as u64));
        }
        self.node
            .handle(now(), NodeInput::AttachmentsHeld { keys: held_whole });
        let dropped = self.room.set_limit(self.room.limit());
        self.delete_attachments(leftovers.into_iter().chain(dropped).collect())
            .await;
        for record in resume {
            let automatic = record.opened_at == 0;
            if self.room.contains(&record.key()) {
                self.download(record, automatic).await;
            }
        }
    }

    fn set_automatic_fetch_bytes(&mut self, bytes: u64) {
        self.automatic_fetch_bytes = bytes;
        self.automatic_fetches = AutomaticFetches::new(AUTOMATIC_FILES_PER_AUTHOR * bytes);
    }

    /// Fetches the attachment `record` describes (`automatic`: not opened by the member), once
    /// it could fit; the page hears where it stands.
    async fn download(&mut self, mut record: AttachmentRecord, automatic: bool) {
        let key = record.key();
        if let Some(download) = self.downloads.get_mut(&key) {
            // Opened while fetching already (its small size had it fetched at once).
            download.automatic &= automatic;
            let download = &self.downloads[&key];
            return self.report(download, download.state, None);
        }
        let stored = self.history.attachment(&key).await.ok().flatten();
        if let Some(stored) = &stored {
            record.own = stored.own;
            record.complete = stored.complete;
            record.bytes_sha256 = stored.bytes_sha256;
            record.opened_at = stored.opened_at;
        }
        if !automatic {
            record.opened_at = js_sys::Date::now() as u64;
        }
        let mut download = Download::new(record, automatic);
        if download.record.complete {
            download.held = download.total();
            self.room.rank(&key, rank(&download.record));
            if let Some(stored) = stored {
                // The opening time, on the record as first described.
                let opened = AttachmentRecord {
                    opened_at: download.record.opened_at,
                    ..stored
                };
                let _ = self.history.put_attachment(&opened).await;
            }
            return match download.record.bytes_sha256 {
                Some(sha256) => self.report_ready(&download, sha256),
                // Stored before the bytes' digest was kept: read them through once.
                None => {
                    self.downloads.insert(key, download);
                    let check = ChunkWork::Check { key, sha256: None };
                    self.hand_to_chunk_writer(check).await;
                }
            };
        }
        let automatic_now = self.downloads.values().filter(|d| d.automatic).count();
        if automatic && automatic_now >= AUTOMATIC_DOWNLOADS {
            return;
        }
        if !self.room.could_fit(&key, key.size) {
            let message = format!(
                "{} bytes do not fit within the storage limit of {} bytes",
                key.size,
                self.room.limit()
            );
            return self.report(&download, "no_room", Some(&message));
        }
        if stored.is_none() {
            // The record keeps the first description; each opening is checked on its own.
            if let Err(error) = self.history.put_attachment(&download.record).await {
                return self.report(&download, "failed", Some(&error.to_string()));
            }
        }
        self.room.pin(key, rank(&download.record));
        let held = self.history.held_chunks(&key).await.unwrap_or_default();
        if held.is_empty() {
            self.digests.begin(key);
        }
        download.held = held.len() as u64;
        self.report(&download, "fetching", None);
        self.downloads.insert(key, download);
        self.node
            .handle(now(), NodeInput::FetchAttachment { key, held });
    }

    /// Stops following `key`, tells the node and the page; the chunks stored so far stay, to
    /// be dropped first when room is needed.
    fn stop_download(&mut self, key: AttachmentKey, state: &'static str, message: Option<&str>) {
        let Some(download) = self.downloads.remove(&key) else {
            return;
        };
        self.digests.forget(&key);
        self.node.handle(now(), NodeInput::CancelAttachment { key });
        self.room.unpin(&key, rank(&download.record));
        self.report(&download, state, message);
    }

    /// Takes room for a verified chunk and hands it to [`write_chunks`].
    async fn store_chunk(
        &mut self,
        key: AttachmentKey,
        index: u64,
        data: Vec<u8>,
        proof: Vec<peerchat_shared::chunk_tree::Hash>,
        from: peerchat_shared::identity::PublicKey,
    ) {
        if !self.downloads.contains_key(&key) {
            return;
        }
        let bytes = data.len() as u64;
        match self.room.take(key, bytes) {
            Ok(dropped) => self.delete_attachments(dropped).await,
            Err(full) => return self.stop_download(key, "no_room", Some(&full.to_string())),
        }
        self.digests.add(&key, index, &data);
        let store = ChunkWork::Store {
            key,
            index,
            data,
            proof,
        };
        self.hand_to_chunk_writer(store).await;
        let time = js_sys::Date::now();
        let Some(download) = self.downloads.get_mut(&key) else {
            return;
        };
        download.held += 1;
        download.state = "fetching";
        download.bytes += bytes;
        download.senders.insert(from);
        download.started_at.get_or_insert(time);
        if time - download.reported_at >= PROGRESS_INTERVAL_MILLIS {
            download.reported_at = time;
            let download = &self.downloads[&key];
            self.report(download, "fetching", None);
        }
    }

    /// Every chunk of `key` is handed to the writer: once the last is written, its digest is
    /// the one taken on the way, or its bytes are read through beside the driver.
    async fn finish_download(&mut self, key: AttachmentKey) {
        if let Some(download) = self.downloads.get_mut(&key) {
            download.held = download.total();
            let sha256 = self.digests.finish(&key);
            self.hand_to_chunk_writer(ChunkWork::Check { key, sha256 })
                .await;
        }
    }

    /// Hands `work` to [`write_chunks`], waiting while it is [`CHUNK_WRITES_AHEAD`] behind.
    async fn hand_to_chunk_writer(&mut self, work: ChunkWork) {
        // Fails only once the writer has ended, with the page.
        let _ = self.chunk_writes.send(work).await;
    }

    /// Keeps the digest of a completed download's bytes and tells the page.
    async fn checked(&mut self, key: AttachmentKey, sha256: Option<Sha256Digest>) {
        let Some(mut download) = self.downloads.remove(&key) else {
            return;
        };
        let Some(sha256) = sha256 else {
            self.room.unpin(&key, rank(&download.record));
            return self.report(&download, "failed", Some("a chunk could not be read"));
        };
        let mut record = match self.history.attachment(&key).await {
            Ok(Some(stored)) => stored,
            _ => download.record.clone(),
        };
        record.complete = true;
        record.bytes_sha256 = Some(sha256);
        record.opened_at = download.record.opened_at;
        download.record.complete = true;
        self.room.unpin(&key, rank(&record));
        if let Err(error) = self.history.put_attachment(&record).await {
            return self.report(&download, "failed", Some(&error.to_string()));
        }
        self.report_ready(&download, sha256);
    }

    /// Keeps room for an upload, pinned while it stores its chunks.
    async fn reserve_upload(&mut self, record: AttachmentRecord) -> Result<(), String> {
        let key = record.key();
        if self.downloads.contains_key(&key) {
            self.stop_download(key, "cancelled", None);
        }
        self.room.remove(&key);
        if !self.room.could_fit(&key, key.size) {
            return Err(format!(
                "There is no room for it within this browser's storage limit ({} bytes); raise the limit in You.",
                self.room.limit()
            ));
        }
        self.room.pin(key, rank(&record));
        let dropped = self
            .room
            .take(key, key.size)
            .map_err(|full| full.to_string())?;
        self.delete_attachments(dropped).await;
        self.history
            .put_attachment(&record)
            .await
            .map_err(|error| error.to_string())
    }

    async fn upload_done(&mut self, key: AttachmentKey, stored: bool) {
        if stored {
            self.room.unpin(&key, (2, js_sys::Date::now() as u64));
            let keys = vec![key];
            self.node.handle(now(), NodeInput::AttachmentsHeld { keys });
        } else {
            self.room.remove(&key);
            self.delete_attachments(vec![key]).await;
        }
    }

    /// Deletes attachments the room dropped; the node serves them no more, and the page offers
    /// them to be fetched again.
    async fn delete_attachments(&mut self, keys: Vec<AttachmentKey>) {
        for key in keys {
            self.node
                .handle(now(), NodeInput::AttachmentDropped { key });
            self.sink.emit(&AttachmentForPage {
                kind: "attachment",
                root: to_base64url(&key.root),
                size: key.size,
                state: "dropped",
                sha256: None,
                held: 0,
                total: chunk_count(key.size),
                peers: Vec::new(),
                bytes_per_second: 0.0,
                message: None,
            });
            if let Err(error) = self.history.delete_attachment(&key).await {
                self.sink
                    .problem(format!("This browser could not delete a file: {error}"));
            }
        }
    }

    fn report_ready(&self, download: &Download, sha256: Sha256Digest) {
        self.emit_report(download, "ready", Some(sha256), None);
    }

    fn report(&self, download: &Download, state: &'static str, message: Option<&str>) {
        self.emit_report(download, state, None, message);
    }

    fn emit_report(
        &self,
        download: &Download,
        state: &'static str,
        sha256: Option<Sha256Digest>,
        message: Option<&str>,
    ) {
        let key = download.record.key();
        self.sink.emit(&AttachmentForPage {
            kind: "attachment",
            root: to_base64url(&key.root),
            size: key.size,
            state,
            sha256: sha256.map(|digest| to_base64url(&digest.0)),
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
