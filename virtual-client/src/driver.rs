//! The tokio driver of `shared`'s [`ClientSession`] and [`PeerMesh`] for one virtual client:
//! one task owns the session, the mesh, the relay socket (tokio-tungstenite), the WebRTC links
//! and the cache, takes events from one bounded queue, and carries out each output before the
//! next event, as the browser's driver does.

use crate::cache::{Evicted, HistoryCache};
use crate::peer_links::PeerLinks;
use crate::state_files::StateFiles;
use crate::VirtualClientStats;
use futures_util::{SinkExt as _, StreamExt as _};
use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::{ClientEvent, ClientInput, ClientOutput, ClientSession, PeerNews};
use peerchat_shared::frames::SessionId;
use peerchat_shared::mesh::{LinkEvent, MeshInput, MeshOutput, PeerMesh};
use peerchat_shared::message::VerifiedEnvelope;
use peerchat_shared::time::UnixMillis;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Events waiting for the driver; a relay that outruns it this far has its connection dropped.
pub(crate) const FEED_QUEUE: usize = 4_096;
/// Frames waiting to go to the relay.
const RELAY_SEND_QUEUE: usize = 1_024;
/// How often the cache drops what aged out of its window.
const EVICTION_INTERVAL: Duration = Duration::from_secs(60);

/// Where an event came from.
#[derive(Debug)]
pub enum Feed {
    /// From the relay socket of this generation (a closed socket's late events are ignored).
    Socket(u64, ClientInput),
    /// Something happened on link number `link` to `session`.
    Link {
        session: SessionId,
        link: u64,
        event: LinkEvent,
    },
}

pub(crate) fn now() -> UnixMillis {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    UnixMillis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// One open relay connection: a task reading and writing the WebSocket.
struct RelaySocket {
    frames: mpsc::Sender<String>,
    task: JoinHandle<()>,
}

impl Drop for RelaySocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RelaySocket {
    fn open(url: String, generation: u64, feed: mpsc::Sender<Feed>) -> Self {
        let (frames, mut outgoing) = mpsc::channel::<String>(RELAY_SEND_QUEUE);
        let task = tokio::spawn(async move {
            let report = |input| feed.send(Feed::Socket(generation, input));
            let Ok((socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
                let _ = report(ClientInput::SocketClosed).await;
                return;
            };
            let _ = report(ClientInput::SocketOpened).await;
            let (mut writer, mut reader) = socket.split();
            loop {
                tokio::select! {
                    frame = outgoing.recv() => {
                        let Some(text) = frame else { break };
                        if writer.send(Message::text(text)).await.is_err() {
                            break;
                        }
                    }
                    message = reader.next() => match message {
                        Some(Ok(Message::Text(text))) => {
                            if report(ClientInput::Frame(text.as_str().to_owned())).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let _ = report(ClientInput::Frame(String::new())).await;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
            let _ = writer.close().await;
            let _ = report(ClientInput::SocketClosed).await;
        });
        Self { frames, task }
    }
}

/// Everything one virtual client's task owns.
pub(crate) struct Driver {
    pub session: ClientSession,
    pub mesh: PeerMesh,
    pub links: PeerLinks,
    pub cache: HistoryCache,
    pub files: StateFiles,
    pub relay_url: String,
    /// `None`: every channel the relay lists.
    pub channels: Option<BTreeSet<ChannelName>>,
    pub stats: Arc<VirtualClientStats>,
    pub feed: mpsc::Sender<Feed>,
    socket: Option<RelaySocket>,
    generation: u64,
    joined: BTreeSet<ChannelName>,
}

impl Driver {
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one part the driver owns"
    )]
    pub(crate) fn new(
        session: ClientSession,
        mesh: PeerMesh,
        links: PeerLinks,
        cache: HistoryCache,
        files: StateFiles,
        relay_url: String,
        channels: Option<BTreeSet<ChannelName>>,
        stats: Arc<VirtualClientStats>,
        feed: mpsc::Sender<Feed>,
    ) -> Self {
        Self {
            session,
            mesh,
            links,
            cache,
            files,
            relay_url,
            channels,
            stats,
            feed,
            socket: None,
            generation: 0,
            joined: BTreeSet::new(),
        }
    }

    /// Runs until `shutdown` fires.
    pub(crate) async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Feed>,
        shutdown: CancellationToken,
    ) {
        self.carry_out_outputs();
        let mut eviction = tokio::time::interval(EVICTION_INTERVAL);
        loop {
            let earliest = [self.session.poll_timeout(), self.mesh.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let wait = earliest.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.0.saturating_sub(now().0))
            });
            tokio::select! {
                () = shutdown.cancelled() => break,
                feed = inputs.recv() => match feed {
                    Some(feed) => self.on_feed(feed),
                    None => break,
                },
                () = tokio::time::sleep(wait) => self.on_timer(),
                _ = eviction.tick() => {
                    let evicted = self.cache.evict(now());
                    self.forget(evicted);
                }
            }
            self.carry_out_outputs();
        }
        self.stats.online.store(false, Ordering::Relaxed);
    }

    fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Socket(generation, input) if generation == self.generation => {
                if input == ClientInput::SocketClosed {
                    self.socket = None;
                }
                self.session.handle(now(), input);
            }
            Feed::Socket(..) => {}
            Feed::Link {
                session,
                link,
                event,
            } => {
                if !self.links.is_current(session, link) {
                    return;
                }
                self.mesh.handle(now(), event.into_input(session));
            }
        }
    }

    fn on_timer(&mut self) {
        let now = now();
        if self.session.poll_timeout().is_some_and(|at| at <= now) {
            self.session.handle(now, ClientInput::Timeout);
        }
        if self.mesh.poll_timeout().is_some_and(|at| at <= now) {
            self.mesh.handle(now, MeshInput::Timeout);
        }
    }

    /// Carries out the session's outputs, then the mesh's (which may cause more of both).
    fn carry_out_outputs(&mut self) {
        loop {
            while let Some(output) = self.session.poll_output() {
                self.carry_out(output);
            }
            let Some(output) = self.mesh.poll_output() else {
                break;
            };
            self.carry_out_for_mesh(output);
        }
        self.stats
            .cached_messages
            .store(self.cache.len() as u64, Ordering::Relaxed);
        self.stats
            .cached_bytes
            .store(self.cache.bytes() as u64, Ordering::Relaxed);
    }

    fn carry_out(&mut self, output: ClientOutput) {
        match output {
            ClientOutput::Connect => {
                self.generation += 1;
                self.socket = Some(RelaySocket::open(
                    self.relay_url.clone(),
                    self.generation,
                    self.feed.clone(),
                ));
            }
            ClientOutput::Close => self.socket = None,
            ClientOutput::Transmit(text) => {
                let full = self
                    .socket
                    .as_ref()
                    .is_some_and(|socket| socket.frames.try_send(text).is_err());
                if full {
                    tracing::warn!("the relay connection is not keeping up; reconnecting");
                    self.socket = None;
                    self.session.handle(now(), ClientInput::SocketClosed);
                }
            }
            ClientOutput::PinRelayKey(key) => self.files.pin_relay(&key),
            ClientOutput::SaveCertificate(certificate) => {
                self.files.save_certificate(certificate.as_ref())
            }
            // A virtual client posts nothing and shows no names.
            ClientOutput::SaveProfile(_)
            | ClientOutput::OutboxPut(_)
            | ClientOutput::OutboxRemove(_) => {}
            ClientOutput::Store { envelope, .. } => self.store(vec![envelope], true),
            ClientOutput::Event(event) => self.on_event(event),
            ClientOutput::Peers(news) => {
                if let PeerNews::Online { relay, .. } = &news {
                    self.stats.online.store(true, Ordering::Relaxed);
                    if let Ok(verifier) = relay.verifier() {
                        let evicted = self.cache.admit_stored(&verifier, now());
                        self.forget(evicted);
                    }
                }
                if news == PeerNews::Offline {
                    // The session joins its channels again itself after reconnecting.
                    self.stats.online.store(false, Ordering::Relaxed);
                }
                self.mesh.handle(now(), MeshInput::Relay(news));
            }
        }
    }

    fn on_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Channels { channels, .. } if self.session.is_online() => {
                let wanted: Vec<ChannelName> = channels
                    .into_iter()
                    .map(|summary| summary.name)
                    .filter(|name| self.channels.as_ref().is_none_or(|set| set.contains(name)))
                    .filter(|name| !self.joined.contains(name))
                    .collect();
                for name in wanted {
                    self.joined.insert(name.clone());
                    self.session.handle(now(), ClientInput::Join(name));
                }
            }
            ClientEvent::Stopped { message } => {
                tracing::error!("the relay refuses this virtual client: {message}")
            }
            ClientEvent::Problem { message, .. } => tracing::warn!("{message}"),
            ClientEvent::Connection { state, .. } => tracing::debug!(?state, "relay connection"),
            _ => {}
        }
    }

    /// Stores envelopes in the cache and tells the mesh what was evicted; `delivered` marks
    /// envelopes that came live from the relay (the mesh remembers them).
    fn store(&mut self, envelopes: Vec<VerifiedEnvelope>, delivered: bool) {
        match self.cache.insert(&envelopes, now()) {
            Ok((_, evicted)) => self.forget(Ok(evicted)),
            Err(error) => tracing::error!("cannot store history: {error}"),
        }
        if delivered {
            for envelope in envelopes {
                self.mesh.handle(
                    now(),
                    MeshInput::Delivered {
                        envelope: Box::new(envelope),
                    },
                );
            }
        }
    }

    fn forget(&mut self, evicted: Result<Evicted, crate::cache::CacheError>) {
        match evicted {
            Ok(evicted) => {
                for (channel, ids) in evicted {
                    self.mesh.handle(now(), MeshInput::Evicted { channel, ids });
                }
            }
            Err(error) => tracing::error!("cannot evict from the cache: {error}"),
        }
    }

    fn carry_out_for_mesh(&mut self, output: MeshOutput) {
        match output {
            MeshOutput::Offer {
                session,
                ice_servers,
            } => self.links.offer(session, &ice_servers),
            MeshOutput::Answer {
                session,
                ice_servers,
                offer,
            } => self.links.answer(session, &ice_servers, offer),
            MeshOutput::Accept { session, answer } => self.links.accept(session, answer),
            MeshOutput::Close { session } => self.links.close(session),
            MeshOutput::ToRelay(input) => self.session.handle(now(), input),
            MeshOutput::SendOnDataChannel { session, text } => {
                if !self.links.send(session, text) {
                    self.mesh.handle(now(), MeshInput::LinkDown { session });
                }
            }
            MeshOutput::ReadIds { channel } => {
                let ids = self.cache.ids(&channel);
                self.mesh.handle(now(), MeshInput::Ids { channel, ids });
            }
            MeshOutput::Load { peer, channel, ids } => {
                let envelopes = self.cache.get(&channel, &ids);
                self.stats
                    .envelopes_served
                    .fetch_add(envelopes.len() as u64, Ordering::Relaxed);
                self.mesh.handle(
                    now(),
                    MeshInput::Loaded {
                        peer,
                        channel,
                        envelopes,
                    },
                );
            }
            MeshOutput::Store { envelopes, .. } => self.store(envelopes, false),
            MeshOutput::Stats(stats) => {
                self.stats
                    .data_channels_open
                    .store(stats.data_channels_open as u64, Ordering::Relaxed);
            }
            MeshOutput::State { channel, state } => {
                tracing::debug!(channel = channel.as_str(), ?state, "history")
            }
            MeshOutput::Refused { key, reason } => {
                tracing::warn!("peer {} refused: {reason}", key.fingerprint())
            }
        }
    }
}
