//! The browser driver of `shared`'s [`ClientSession`] and [`PeerMesh`]: one task owns the
//! session, the mesh, the WebSocket and the WebRTC links, takes inputs (socket and link events,
//! the member's actions, timers) from one bounded queue, and carries out each output before the
//! next input, writing to IndexedDB before the page is told. The UI gets plain JavaScript
//! objects through one callback.

use crate::identity_store::{random_bytes, IdentityStore};
use crate::indexeddb::IndexedDbStore;
use crate::peer_links::PeerLinks;
use futures_channel::mpsc;
use futures_util::future::{poll_fn, select, Either};
use futures_util::StreamExt as _;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::{ClientEvent, ClientInput, ClientOutput, ClientSession, MessageView};
use peerchat_shared::frames::SessionId;
use peerchat_shared::mesh::{LinkEvent, MeshInput, MeshOutput, MeshStats, PeerMesh};
use peerchat_shared::message::VerifiedEnvelope;
use peerchat_shared::store::HistoryStore as _;
use peerchat_shared::sync::HistoryState;
use peerchat_shared::time::UnixMillis;
use serde::Serialize;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

/// Inputs waiting for the session. A relay that outruns the page this far gets its connection
/// closed (and reconnected), as the relay does with a slow reader.
pub const INPUT_QUEUE: usize = 4_096;
/// Most queued frames handed to the session before its outputs are carried out.
const FRAMES_PER_BATCH: usize = 256;
/// Batches of peer history waiting to be written while the driver verifies the next ones.
const HISTORY_WRITES_AHEAD: usize = 4;

/// Where an input came from: a socket (by generation, so a closed socket's late events are
/// ignored) or the member.
#[derive(Debug)]
pub(crate) enum Feed {
    Socket(u64, ClientInput),
    /// The socket of this generation could not queue an input: drop the connection.
    SocketOverflow(u64),
    Member(ClientInput),
    /// Something happened on link number `link` to `session`.
    Link {
        session: SessionId,
        link: u64,
        event: LinkEvent,
    },
    /// The earliest time-out of the session or the mesh has come.
    Timer,
}

pub(crate) fn now() -> UnixMillis {
    UnixMillis(js_sys::Date::now() as u64)
}

/// The page's callback, given one event object at a time.
#[derive(Clone)]
pub(crate) struct EventSink(pub js_sys::Function);

impl EventSink {
    pub(crate) fn emit(&self, event: &impl Serialize) {
        if let Some(value) = Self::to_value(event) {
            self.call(&value);
        }
    }

    fn to_value(event: &impl Serialize) -> Option<JsValue> {
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        event
            .serialize(&serializer)
            .map_err(|error| web_sys::console::error_1(&error.to_string().into()))
            .ok()
    }

    fn call(&self, value: &JsValue) {
        // An exception in the page's handler is the page's to report.
        let _ = self.0.call1(&JsValue::NULL, value);
    }

    pub(crate) fn problem(&self, message: String) {
        self.emit(&ClientEvent::Problem {
            code: None,
            message,
        });
    }
}

/// A stored message for the page; `acknowledged` marks the member's own message confirmed.
#[derive(Serialize)]
pub(crate) struct MessageEventForPage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub message: &'a MessageView,
    pub acknowledged: bool,
}

/// Envelopes that came from peers, for the page to add to a channel's log in one go.
#[derive(Serialize)]
struct HistoryForPage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a ChannelName,
    messages: Vec<MessageView>,
}

/// A channel's history state for the page.
#[derive(Serialize)]
struct HistoryStateForPage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a ChannelName,
    #[serde(flatten)]
    state: HistoryState,
}

/// The peer links and what came over them, for the page.
#[derive(Serialize)]
struct PeersForPage {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    stats: MeshStats,
}

/// What the mesh has for IndexedDB and the page, carried out in order by [`write_history`].
enum HistoryWork {
    /// Verified envelopes from a peer: stored, then shown.
    Store {
        channel: ChannelName,
        envelopes: Vec<VerifiedEnvelope>,
    },
    /// A page event that must not overtake the history stored before it.
    Event(JsValue),
}

/// Stores peer history and tells the page, in order, while the driver goes on verifying what
/// comes next: IndexedDB works beside the page, so receiving a backlog costs about the larger
/// of the two instead of their sum. Batches waiting together share one transaction. Ends when
/// the driver drops its sender.
async fn write_history(
    history: Rc<IndexedDbStore>,
    sink: EventSink,
    mut work: mpsc::Receiver<HistoryWork>,
) {
    while let Some(first) = work.next().await {
        let mut item = Some(first);
        while let Some(current) = item.take() {
            match current {
                HistoryWork::Event(value) => sink.call(&value),
                HistoryWork::Store { channel, envelopes } => {
                    let mut batches = vec![(channel, envelopes)];
                    item = take_waiting_stores(&mut work, &mut batches);
                    store_and_show(&history, &sink, batches).await;
                }
            }
        }
    }
}

/// Moves the history batches already waiting into `batches`; returns the event that stopped
/// it, if one did.
fn take_waiting_stores(
    work: &mut mpsc::Receiver<HistoryWork>,
    batches: &mut Vec<(ChannelName, Vec<VerifiedEnvelope>)>,
) -> Option<HistoryWork> {
    while let Ok(queued) = work.try_recv() {
        match queued {
            HistoryWork::Store { channel, envelopes } => batches.push((channel, envelopes)),
            event => return Some(event),
        }
    }
    None
}

/// Stores batches of peer history in one transaction, then shows each.
async fn store_and_show(
    history: &IndexedDbStore,
    sink: &EventSink,
    batches: Vec<(ChannelName, Vec<VerifiedEnvelope>)>,
) {
    let all: Vec<VerifiedEnvelope> = batches
        .iter()
        .flat_map(|(_, envelopes)| envelopes.iter().cloned())
        .collect();
    if let Err(error) = history.insert(&all).await {
        sink.problem(format!("This browser could not save data: {error}"));
        return;
    }
    for (channel, envelopes) in &batches {
        sink.emit(&HistoryForPage {
            kind: "history",
            channel,
            messages: envelopes
                .iter()
                .map(|envelope| MessageView::from(envelope.envelope()))
                .collect(),
        });
    }
}

/// An open WebSocket and the closures it calls, which live exactly as long as it does.
struct Socket {
    web_socket: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    fn open(url: &str, generation: u64, feed: &mpsc::Sender<Feed>) -> Result<Self, JsValue> {
        let web_socket = WebSocket::new(url)?;
        let sender = |feed: &mpsc::Sender<Feed>| {
            let mut feed = feed.clone();
            move |input: ClientInput| {
                if feed.try_send(Feed::Socket(generation, input)).is_err() {
                    let _ = feed.try_send(Feed::SocketOverflow(generation));
                }
            }
        };
        let mut opened = sender(feed);
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| opened(ClientInput::SocketOpened));
        let mut received = sender(feed);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            // The relay sends text frames only; anything else is a malformed frame.
            let text = event.data().as_string().unwrap_or_default();
            received(ClientInput::Frame(text));
        });
        let mut closed = sender(feed);
        let on_close =
            Closure::<dyn FnMut(CloseEvent)>::new(move |_| closed(ClientInput::SocketClosed));
        web_socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        web_socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        web_socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Self {
            web_socket,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.web_socket.set_onopen(None);
        self.web_socket.set_onmessage(None);
        self.web_socket.set_onclose(None);
        let _ = self.web_socket.close();
    }
}

/// Everything the session task owns.
pub(crate) struct Driver {
    pub session: ClientSession,
    pub mesh: PeerMesh,
    links: PeerLinks,
    pub relay_url: String,
    pub history: Rc<IndexedDbStore>,
    pub identity: Rc<IdentityStore>,
    pub sink: EventSink,
    pub feed: mpsc::Sender<Feed>,
    history_writes: mpsc::Sender<HistoryWork>,
    socket: Option<Socket>,
    generation: u64,
}

impl Driver {
    pub(crate) fn new(
        session: ClientSession,
        mesh: PeerMesh,
        relay_url: String,
        history: Rc<IndexedDbStore>,
        identity: Rc<IdentityStore>,
        sink: EventSink,
        feed: mpsc::Sender<Feed>,
    ) -> Self {
        let (history_writes, work) = mpsc::channel(HISTORY_WRITES_AHEAD);
        wasm_bindgen_futures::spawn_local(write_history(history.clone(), sink.clone(), work));
        Self {
            session,
            mesh,
            links: PeerLinks::new(feed.clone()),
            relay_url,
            history,
            identity,
            sink,
            feed,
            history_writes,
            socket: None,
            generation: 0,
        }
    }

    /// Runs until the page drops every sender (the client is freed).
    pub(crate) async fn run(mut self, mut inputs: mpsc::Receiver<Feed>) {
        self.carry_out_outputs().await;
        loop {
            let earliest = [self.session.poll_timeout(), self.mesh.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let next = match earliest {
                Some(at) => {
                    let wait = at.0.saturating_sub(now().0).min(u64::from(u32::MAX / 2));
                    let timer = gloo_timers::future::TimeoutFuture::new(wait as u32);
                    match select(inputs.next(), timer).await {
                        Either::Left((feed, _)) => feed,
                        Either::Right(((), _)) => Some(Feed::Timer),
                    }
                }
                None => inputs.next().await,
            };
            let Some(feed) = next else { break };
            if let Feed::Link {
                session,
                link,
                event,
            } = feed
            {
                self.on_link_event(session, link, event);
                self.carry_out_outputs().await;
                continue;
            }
            if let Feed::Timer = feed {
                self.on_timer();
                self.carry_out_outputs().await;
                continue;
            }
            if let Some(input) = self.accept(feed) {
                self.session.handle(now(), input);
                let held_back = self.take_queued_frames(&mut inputs);
                self.carry_out_outputs().await;
                if let Some(input) = held_back.and_then(|feed| self.accept(feed)) {
                    self.session.handle(now(), input);
                    self.carry_out_outputs().await;
                }
            }
        }
        self.socket = None;
    }

    /// Feeds `Timeout` to whichever of the session and the mesh is due.
    fn on_timer(&mut self) {
        let now = now();
        if self.session.poll_timeout().is_some_and(|at| at <= now) {
            self.session.handle(now, ClientInput::Timeout);
        }
        if self.mesh.poll_timeout().is_some_and(|at| at <= now) {
            self.mesh.handle(now, MeshInput::Timeout);
        }
    }

    fn on_link_event(&mut self, session: SessionId, link: u64, event: LinkEvent) {
        if !self.links.is_current(session, link) {
            return;
        }
        self.mesh.handle(now(), event.into_input(session));
    }

    /// Hands the session the frames already waiting from the current socket (at most
    /// [`FRAMES_PER_BATCH`]), so that the envelopes among them are stored in one IndexedDB
    /// transaction. Returns the first other input met, to be handled after.
    fn take_queued_frames(&mut self, inputs: &mut mpsc::Receiver<Feed>) -> Option<Feed> {
        for _ in 0..FRAMES_PER_BATCH {
            match inputs.try_recv() {
                Ok(Feed::Socket(generation, ClientInput::Frame(text)))
                    if generation == self.generation =>
                {
                    self.session.handle(now(), ClientInput::Frame(text));
                }
                Ok(other) => return Some(other),
                Err(_) => return None,
            }
        }
        None
    }

    /// The input to hand the session, if it concerns the current socket.
    fn accept(&mut self, feed: Feed) -> Option<ClientInput> {
        match feed {
            Feed::Member(input) => Some(input),
            Feed::Socket(generation, input) if generation == self.generation => {
                if input == ClientInput::SocketClosed {
                    self.socket = None;
                }
                Some(input)
            }
            Feed::SocketOverflow(generation) if generation == self.generation => {
                self.sink
                    .problem("The relay sent more than this page could take; reconnecting.".into());
                self.socket = None;
                Some(ClientInput::SocketClosed)
            }
            Feed::Socket(..) | Feed::SocketOverflow(_) | Feed::Link { .. } | Feed::Timer => None,
        }
    }

    /// Carries out the session's and the mesh's outputs in order, the session's first (the
    /// mesh's may cause more of them); consecutive stores become one batch.
    async fn carry_out_outputs(&mut self) {
        loop {
            let mut stores = Vec::new();
            while let Some(output) = self.session.poll_output() {
                match output {
                    ClientOutput::Store {
                        envelope,
                        acknowledged,
                    } => stores.push((envelope, acknowledged)),
                    other => {
                        self.store_batch(std::mem::take(&mut stores)).await;
                        self.carry_out(other).await;
                    }
                }
            }
            self.store_batch(stores).await;
            let Some(output) = self.mesh.poll_output() else {
                return;
            };
            if let Err(message) = self.carry_out_for_mesh(output).await {
                self.sink
                    .problem(format!("This browser could not save data: {message}"));
            }
        }
    }

    async fn carry_out_for_mesh(&mut self, output: MeshOutput) -> Result<(), String> {
        match output {
            MeshOutput::Offer {
                session,
                ice_servers,
            } => {
                if !self.links.offer(session, &ice_servers) {
                    self.mesh.handle(now(), MeshInput::LinkDown { session });
                }
            }
            MeshOutput::Answer {
                session,
                ice_servers,
                offer,
            } => {
                if !self.links.answer(session, &ice_servers, offer) {
                    self.mesh.handle(now(), MeshInput::LinkDown { session });
                }
            }
            MeshOutput::Accept { session, answer } => self.links.accept(session, answer),
            MeshOutput::Close { session } => self.links.close(session),
            MeshOutput::ToRelay(input) => self.session.handle(now(), input),
            MeshOutput::SendOnDataChannel { session, text } => {
                if !self.links.send(session, &text) {
                    self.mesh.handle(now(), MeshInput::LinkDown { session });
                }
            }
            MeshOutput::ReadIds { channel } => {
                let ids = self
                    .history
                    .ids(&channel)
                    .await
                    .map_err(|error| error.to_string())?;
                self.mesh.handle(now(), MeshInput::Ids { channel, ids });
            }
            MeshOutput::Load { peer, channel, ids } => {
                let envelopes = self
                    .history
                    .get(&channel, &ids)
                    .await
                    .map_err(|error| error.to_string())?;
                self.mesh.handle(
                    now(),
                    MeshInput::Loaded {
                        peer,
                        channel,
                        envelopes,
                    },
                );
            }
            MeshOutput::Store {
                channel, envelopes, ..
            } => {
                self.hand_to_writer(HistoryWork::Store { channel, envelopes })
                    .await
            }
            MeshOutput::State { channel, state } => {
                self.emit_after_history(&HistoryStateForPage {
                    kind: "history_state",
                    channel: &channel,
                    state,
                })
                .await
            }
            MeshOutput::Stats(stats) => {
                self.emit_after_history(&PeersForPage {
                    kind: "peers",
                    stats,
                })
                .await
            }
            MeshOutput::Refused { key, reason } => {
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

    async fn store_batch(&mut self, stores: Vec<(VerifiedEnvelope, bool)>) {
        if stores.is_empty() {
            return;
        }
        if let Err(message) = self.store(stores).await {
            self.sink
                .problem(format!("This browser could not save data: {message}"));
        }
    }

    async fn carry_out(&mut self, output: ClientOutput) {
        let outcome = match output {
            ClientOutput::Connect => {
                self.generation += 1;
                match Socket::open(&self.relay_url, self.generation, &self.feed) {
                    Ok(socket) => self.socket = Some(socket),
                    Err(_) => {
                        self.sink
                            .problem(format!("Cannot open {}.", self.relay_url));
                        self.session.handle(now(), ClientInput::SocketClosed);
                    }
                }
                Ok(())
            }
            ClientOutput::Close => {
                self.socket = None;
                Ok(())
            }
            ClientOutput::Transmit(text) => {
                if let Some(socket) = &self.socket {
                    // A failed send shows up as the socket closing.
                    let _ = socket.web_socket.send_with_str(&text);
                }
                Ok(())
            }
            ClientOutput::PinRelayKey(key) => self
                .identity
                .check_relay_key(&self.relay_url, &key)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string()),
            ClientOutput::SaveCertificate(certificate) => self
                .history
                .save_certificate(certificate.as_ref())
                .await
                .map_err(|error| error.to_string()),
            ClientOutput::SaveProfile(profile) => self
                .history
                .save_profile(&profile)
                .await
                .map_err(|error| error.to_string()),
            ClientOutput::OutboxPut(entry) => self
                .history
                .outbox_put(&entry)
                .await
                .map_err(|error| error.to_string()),
            ClientOutput::OutboxRemove(nonce) => self
                .history
                .outbox_remove(&nonce)
                .await
                .map_err(|error| error.to_string()),
            ClientOutput::Event(event) => self.on_event(event).await,
            ClientOutput::Peers(news) => {
                self.mesh.handle(now(), MeshInput::Relay(news));
                Ok(())
            }
            ClientOutput::Store {
                envelope,
                acknowledged,
            } => self.store(vec![(envelope, acknowledged)]).await,
        };
        if let Err(message) = outcome {
            self.sink
                .problem(format!("This browser could not save data: {message}"));
        }
    }

    /// Stores a batch of envelopes in one transaction, clears acknowledged ones from the
    /// outbox, then tells the page about each.
    async fn store(&mut self, stores: Vec<(VerifiedEnvelope, bool)>) -> Result<(), String> {
        let (envelopes, acknowledged): (Vec<_>, Vec<bool>) = stores.into_iter().unzip();
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
        let now = now();
        for envelope in envelopes {
            self.mesh.handle(
                now,
                MeshInput::Delivered {
                    envelope: Box::new(envelope),
                },
            );
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

/// A fresh nonce for a message.
pub(crate) fn fresh_nonce() -> Result<peerchat_shared::message::ClientNonce, JsError> {
    Ok(peerchat_shared::message::ClientNonce(
        random_bytes().map_err(|error| JsError::new(&error.to_string()))?,
    ))
}
