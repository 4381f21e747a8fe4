//! WebRTC for a virtual client with the `webrtc` crate (0.21): one peer connection and one data
//! channel per link, made as the node asks. Each link runs in tasks of its own and reports back
//! to the driver's queue as [`NodeInput::Link`], tagged with the number the node gave the link.
//! Signalling is non-trickle, as in the browser: the description is reported once ICE gathering
//! is complete.

use crate::throttle::Throttle;
use bytes::BytesMut;
use peerchat_shared::frames::{IceServer, SessionId};
use peerchat_shared::mesh::LinkEvent;
use peerchat_shared::node::{
    LinkNumber, NodeInput, DATA_CHANNEL_LABEL, ICE_GATHERING_LIMIT_MILLIS, LINK_SEND_QUEUE_BYTES,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState, RTCSessionDescription,
    SettingEngineBuilder,
};

/// Bytes handed to a data channel and not yet acknowledged, per channel (TOOLCHAIN.md: larger
/// buffers overflow the kernel's UDP buffer and throughput collapses).
const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// How links reach the network.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Local UDP addresses to bind (`0.0.0.0:0`: every interface, ephemeral ports).
    pub udp_bind: Vec<SocketAddr>,
    /// Accept remote mDNS (`.local`) candidates, as browsers hide their addresses behind them.
    /// Needs a network with multicast; off in sealed namespaces.
    pub mdns: bool,
}

enum Command {
    Accept(String),
}

struct LinkHandle {
    number: LinkNumber,
    commands: mpsc::UnboundedSender<Command>,
    outgoing: OutgoingQueue,
    task: JoinHandle<()>,
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The links of one virtual client.
pub struct PeerLinks {
    settings: LinkSettings,
    feed: mpsc::Sender<NodeInput>,
    throttle: Arc<Throttle>,
    links: HashMap<SessionId, LinkHandle>,
}

impl std::fmt::Debug for PeerLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLinks")
            .field("links", &self.links.len())
            .finish()
    }
}

impl PeerLinks {
    pub fn new(
        settings: LinkSettings,
        feed: mpsc::Sender<NodeInput>,
        throttle: Arc<Throttle>,
    ) -> Self {
        Self {
            settings,
            feed,
            throttle,
            links: HashMap::new(),
        }
    }

    pub fn accept(&mut self, session: SessionId, answer: String) {
        if let Some(link) = self.links.get(&session) {
            let _ = link.commands.send(Command::Accept(answer));
        }
    }

    pub fn close(&mut self, session: SessionId) {
        self.links.remove(&session);
    }

    /// Queues a message for the data channel to `session`, or drops it when
    /// [`LINK_SEND_QUEUE_BYTES`] (text) or its `queue_limit` (a chunk frame) are
    /// already waiting; returns the link's number once its task has ended.
    pub fn send(&mut self, session: SessionId, message: Outgoing) -> Option<LinkNumber> {
        let link = self.links.get(&session)?;
        (!link.outgoing.push(session, message)).then_some(link.number)
    }

    /// Opens link `number` to `session` (replacing any other): offers it, or answers `offer`.
    /// The description comes back as a [`LinkEvent::Description`].
    pub fn open(
        &mut self,
        session: SessionId,
        number: LinkNumber,
        ice_servers: &[IceServer],
        offer: Option<String>,
    ) {
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let (frames, outgoing_receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let outgoing = OutgoingQueue {
            frames,
            queued: Arc::clone(&queued),
        };
        let reporter = Reporter {
            feed: self.feed.clone(),
            session,
            number,
        };
        let setup = LinkSetup {
            settings: self.settings.clone(),
            ice_servers: ice_servers.iter().map(to_rtc_ice_server).collect(),
            offer,
            throttle: Arc::clone(&self.throttle),
            queued,
        };
        let task = tokio::spawn(async move {
            let outcome = Box::pin(run_link(
                setup,
                &reporter,
                command_receiver,
                outgoing_receiver,
            ))
            .await;
            if let Err(error) = outcome {
                tracing::debug!(session = session.0, "link ended: {error}");
            }
            reporter.report(LinkEvent::Down).await;
        });
        self.links.insert(
            session,
            LinkHandle {
                number,
                commands,
                outgoing,
                task,
            },
        );
    }
}

fn to_rtc_ice_server(server: &IceServer) -> RTCIceServer {
    RTCIceServer {
        urls: server.urls.clone(),
        username: server.username.clone().unwrap_or_default(),
        credential: server.credential.clone().unwrap_or_default(),
    }
}

/// Sends a link's events to the driver.
struct Reporter {
    feed: mpsc::Sender<NodeInput>,
    session: SessionId,
    number: LinkNumber,
}

impl Reporter {
    async fn report(&self, event: LinkEvent) {
        let _ = self
            .feed
            .send(NodeInput::Link {
                session: self.session,
                link: self.number,
                event,
            })
            .await;
    }
}

struct LinkSetup {
    settings: LinkSettings,
    ice_servers: Vec<RTCIceServer>,
    /// The remote offer, when answering.
    offer: Option<String>,
    throttle: Arc<Throttle>,
    /// Bytes in the link's outgoing queue, shared with its [`OutgoingQueue`].
    queued: Arc<AtomicUsize>,
}

/// What the peer connection's handler passes on to the link's task.
enum Happening {
    GatheringComplete,
    Failed,
    DataChannel(Arc<dyn DataChannel>),
}

struct Handler {
    happenings: mpsc::UnboundedSender<Happening>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.happenings.send(Happening::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if matches!(
            state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            let _ = self.happenings.send(Happening::Failed);
        }
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        let _ = self.happenings.send(Happening::DataChannel(data_channel));
    }
}

type LinkResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Negotiates the link, then carries frames both ways until it fails or is dropped.
async fn run_link(
    setup: LinkSetup,
    reporter: &Reporter,
    mut commands: mpsc::UnboundedReceiver<Command>,
    outgoing: mpsc::UnboundedReceiver<Outgoing>,
) -> LinkResult {
    let (happening_sender, mut happenings) = mpsc::unbounded_channel();
    let mdns = if setup.settings.mdns {
        rtc::ice::mdns::MulticastDnsMode::QueryOnly
    } else {
        rtc::ice::mdns::MulticastDnsMode::Disabled
    };
    let connection = Box::pin(
        PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(setup.ice_servers)
                    .build(),
            )
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(mdns)
                    .build(),
            )
            .with_handler(Arc::new(Handler {
                happenings: happening_sender,
            }))
            .with_udp_addrs(setup.settings.udp_bind.clone())
            .with_data_channel_send_buffer_limit(SEND_BUFFER_BYTES)
            .build(),
    )
    .await?;
    let connection = CloseOnDrop(Arc::new(connection));
    let pc = &connection.0;
    let mut data_channel = None;
    let description = match setup.offer {
        None => {
            data_channel = Some(pc.create_data_channel(DATA_CHANNEL_LABEL, None).await?);
            pc.create_offer(None).await?
        }
        Some(offer) => {
            pc.set_remote_description(RTCSessionDescription::offer(offer)?)
                .await?;
            pc.create_answer(None).await?
        }
    };
    let answering = data_channel.is_none();
    pc.set_local_description(description).await?;
    let gathering = Duration::from_millis(ICE_GATHERING_LIMIT_MILLIS);
    let _ = tokio::time::timeout(gathering, async {
        while let Some(happening) = happenings.recv().await {
            if let Happening::GatheringComplete = happening {
                return;
            }
        }
    })
    .await;
    let local = pc.local_description().await.ok_or("no local description")?;
    reporter.report(LinkEvent::Description(local.sdp)).await;
    if !answering {
        let Some(Command::Accept(answer)) = commands.recv().await else {
            return Ok(());
        };
        pc.set_remote_description(RTCSessionDescription::answer(answer)?)
            .await?;
    }
    let data_channel = match data_channel {
        Some(channel) => channel,
        None => loop {
            match happenings.recv().await {
                Some(Happening::DataChannel(channel)) => break channel,
                Some(Happening::Failed) | None => return Ok(()),
                Some(Happening::GatheringComplete) => {}
            }
        },
    };
    let sender = tokio::spawn(send_frames(
        Arc::clone(&data_channel),
        outgoing,
        setup.throttle,
        setup.queued,
    ));
    let _abort_sender = AbortOnDrop(sender);
    loop {
        tokio::select! {
            event = data_channel.poll() => match event {
                Some(DataChannelEvent::OnOpen) => reporter.report(LinkEvent::Open).await,
                Some(DataChannelEvent::OnMessage(message)) => {
                    let event = if message.is_string {
                        // Text that is not UTF-8 is an unreadable frame: the mesh refuses the
                        // peer.
                        LinkEvent::Frame(
                            String::from_utf8(message.data.to_vec()).unwrap_or_default(),
                        )
                    } else {
                        LinkEvent::Binary(message.data.to_vec())
                    };
                    reporter.report(event).await;
                }
                Some(DataChannelEvent::OnClose) | None => {
                    tracing::debug!("data channel closed");
                    return Ok(());
                }
                Some(_) => {}
            },
            happening = happenings.recv() => match happening {
                Some(Happening::Failed) | None => {
                    tracing::debug!("peer connection failed or closed");
                    return Ok(());
                }
                Some(_) => {}
            },
        }
    }
}

/// Sends queued frames in order, within the process's bandwidth budget and the channel's
/// send buffer (a full buffer makes `send_text` wait).
async fn send_frames(
    data_channel: Arc<dyn DataChannel>,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    throttle: Arc<Throttle>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(message) = outgoing.recv().await {
        let bytes = message.len();
        queued.fetch_sub(bytes, Ordering::Relaxed);
        throttle.wait_for(bytes).await;
        let sent = match message {
            Outgoing::Text(text) => data_channel.send_text(&text).await,
            Outgoing::Binary { bytes, .. } => {
                data_channel.send(BytesMut::from(bytes.as_slice())).await
            }
        };
        if let Err(error) = sent {
            tracing::warn!("data channel send failed ({bytes} bytes): {error}");
            return;
        }
    }
}

/// A message for a link's data channel: a history frame or a chunk frame.
#[derive(Debug)]
pub enum Outgoing {
    Text(String),
    Binary { bytes: Vec<u8>, queue_limit: usize },
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Binary { bytes, .. } => bytes.len(),
        }
    }

    /// What may wait on a link before this is dropped (history goes before chunks).
    fn queue_limit(&self) -> usize {
        match self {
            Self::Text(_) => LINK_SEND_QUEUE_BYTES,
            Self::Binary { queue_limit, .. } => *queue_limit,
        }
    }
}

/// A link's frames waiting for its sending task, bounded in bytes.
struct OutgoingQueue {
    frames: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
}

impl OutgoingQueue {
    /// Queues `message` (or drops it when the queue is full); false once the link's task has
    /// ended.
    fn push(&self, session: SessionId, message: Outgoing) -> bool {
        let bytes = message.len();
        if self.queued.load(Ordering::Relaxed) + bytes > message.queue_limit() {
            tracing::debug!(session = session.0, "peer is not keeping up; frame dropped");
            return !self.frames.is_closed();
        }
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        self.frames.send(message).is_ok()
    }
}

struct CloseOnDrop(Arc<dyn PeerConnection>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let connection = Arc::clone(&self.0);
        tokio::spawn(async move {
            let _ = connection.close().await;
        });
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
