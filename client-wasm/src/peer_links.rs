//! WebRTC links to other members, as `shared`'s [`Node`] asks for them: one
//! `RTCPeerConnection` with one data channel per link. Offers and answers are sent once ICE
//! gathering is complete (no trickle), so one `signal` each way sets a link up. Everything that
//! happens on a link comes back to the driver task as a [`NodeInput::Link`], tagged with the
//! number the node gave the link.
//!
//! [`Node`]: peerchat_shared::node::Node

use crate::driver::Feed;
use futures_channel::mpsc;
use peerchat_shared::frames::{IceServer, SessionId};
use peerchat_shared::mesh::LinkEvent;
use peerchat_shared::node::{
    LinkNumber, NodeInput, DATA_CHANNEL_LABEL, ICE_GATHERING_LIMIT_MILLIS, LINK_SEND_QUEUE_BYTES,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Event, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent,
    RtcDataChannelState, RtcDataChannelType, RtcIceGatheringState, RtcIceServer, RtcPeerConnection,
    RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

const GATHERING_POLL_MILLIS: u32 = 50;

/// Queues link events for the driver; a frame that does not fit closes the data channel (the
/// sync engine asks another peer).
#[derive(Clone)]
struct LinkFeed {
    feed: mpsc::Sender<Feed>,
    session: SessionId,
    link: LinkNumber,
}

impl LinkFeed {
    fn send(&self, event: LinkEvent) -> bool {
        let input = NodeInput::Link {
            session: self.session,
            link: self.link,
            event,
        };
        self.feed.clone().try_send(Feed::Input(input)).is_ok()
    }
}

/// A data channel and the closures it calls, which live exactly as long as it does.
struct DataChannel {
    channel: RtcDataChannel,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(Event)>,
}

impl DataChannel {
    fn attach(channel: RtcDataChannel, feed: &LinkFeed) -> Self {
        let opened = feed.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| {
            opened.send(LinkEvent::Open);
        });
        let received = feed.clone();
        let receiving_channel = channel.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            // History frames are text, chunk frames binary (an ArrayBuffer); anything else is
            // an unreadable frame for the mesh.
            let data = event.data();
            let event = match data.as_string() {
                Some(text) => LinkEvent::Frame(text),
                None => LinkEvent::Binary(js_sys::Uint8Array::new(&data).to_vec()),
            };
            if !received.send(event) {
                receiving_channel.close();
            }
        });
        let closed = feed.clone();
        let on_close = Closure::<dyn FnMut(Event)>::new(move |_| {
            closed.send(LinkEvent::Down);
        });
        channel.set_binary_type(RtcDataChannelType::Arraybuffer);
        channel.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        channel.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        if channel.ready_state() == RtcDataChannelState::Open {
            feed.send(LinkEvent::Open);
        }
        Self {
            channel,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        }
    }
}

impl Drop for DataChannel {
    fn drop(&mut self) {
        self.channel.set_onopen(None);
        self.channel.set_onmessage(None);
        self.channel.set_onclose(None);
        self.channel.close();
    }
}

/// One peer connection, its data channel once there is one, and its closures.
struct PeerLink {
    number: LinkNumber,
    connection: RtcPeerConnection,
    data_channel: Rc<RefCell<Option<DataChannel>>>,
    _on_state_change: Closure<dyn FnMut(Event)>,
    _on_data_channel: Option<Closure<dyn FnMut(RtcDataChannelEvent)>>,
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.connection.set_onconnectionstatechange(None);
        self.connection.set_ondatachannel(None);
        self.data_channel.borrow_mut().take();
        self.connection.close();
    }
}

/// The open links, by the session at their other end.
pub(crate) struct PeerLinks {
    feed: mpsc::Sender<Feed>,
    links: HashMap<SessionId, PeerLink>,
}

impl PeerLinks {
    pub(crate) fn new(feed: mpsc::Sender<Feed>) -> Self {
        Self {
            feed,
            links: HashMap::new(),
        }
    }

    /// Opens link `number` to `session` (replacing any other): offers it with a new data
    /// channel, or answers `offer`; signals the description when gathering is done. False when
    /// this browser cannot open one (WebRTC turned off).
    pub(crate) fn open(
        &mut self,
        session: SessionId,
        number: LinkNumber,
        ice_servers: &[IceServer],
        offer: Option<String>,
    ) -> bool {
        let answering = offer.is_some();
        let Some(feed) = self.connect(session, number, ice_servers, answering) else {
            return false;
        };
        let Some(link) = self.links.get(&session) else {
            return false;
        };
        let connection = link.connection.clone();
        match offer {
            None => {
                let channel = connection.create_data_channel(DATA_CHANNEL_LABEL);
                *link.data_channel.borrow_mut() = Some(DataChannel::attach(channel, &feed));
                negotiate(feed, async move {
                    let offer = JsFuture::from(connection.create_offer()).await?;
                    let offer: RtcSessionDescriptionInit = offer.unchecked_into();
                    JsFuture::from(connection.set_local_description(&offer)).await?;
                    complete_description(&connection).await
                });
            }
            Some(offer) => negotiate(feed, async move {
                let remote = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
                remote.set_sdp(&offer);
                JsFuture::from(connection.set_remote_description(&remote)).await?;
                let answer = JsFuture::from(connection.create_answer()).await?;
                let answer: RtcSessionDescriptionInit = answer.unchecked_into();
                JsFuture::from(connection.set_local_description(&answer)).await?;
                complete_description(&connection).await
            }),
        }
        true
    }

    /// Applies the answer to the offer made to `session`.
    pub(crate) fn accept(&mut self, session: SessionId, answer: String) {
        let Some(link) = self.links.get(&session) else {
            return;
        };
        let connection = link.connection.clone();
        let feed = self.link_feed(session, link.number);
        wasm_bindgen_futures::spawn_local(async move {
            let remote = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
            remote.set_sdp(&answer);
            if JsFuture::from(connection.set_remote_description(&remote))
                .await
                .is_err()
            {
                feed.send(LinkEvent::Down);
            }
        });
    }

    pub(crate) fn close(&mut self, session: SessionId) {
        self.links.remove(&session);
    }

    /// Sends `text` on the data channel to `session`, or drops it when [`LINK_SEND_QUEUE_BYTES`]
    /// are already buffered; returns the link's number when no data channel is open.
    pub(crate) fn send(&self, session: SessionId, text: &str) -> Option<LinkNumber> {
        self.send_with(session, text.len(), LINK_SEND_QUEUE_BYTES, |channel| {
            channel.send_with_str(text)
        })
    }

    /// Sends a chunk frame as a binary message, or drops it when `queue_limit` bytes are
    /// already buffered (history goes first); returns the link's number when no data channel
    /// is open.
    pub(crate) fn send_binary(
        &self,
        session: SessionId,
        bytes: &[u8],
        queue_limit: usize,
    ) -> Option<LinkNumber> {
        self.send_with(session, bytes.len(), queue_limit, |channel| {
            channel.send_with_u8_array(bytes)
        })
    }

    fn send_with(
        &self,
        session: SessionId,
        len: usize,
        queue_limit: usize,
        send: impl FnOnce(&RtcDataChannel) -> Result<(), JsValue>,
    ) -> Option<LinkNumber> {
        let link = self.links.get(&session)?;
        let data_channel = link.data_channel.borrow();
        let open = match data_channel.as_ref() {
            Some(open) if open.channel.ready_state() == RtcDataChannelState::Open => open,
            _ => return Some(link.number),
        };
        let buffered = open.channel.buffered_amount() as usize;
        if buffered + len > queue_limit {
            return None;
        }
        send(&open.channel).err().map(|_| link.number)
    }

    fn link_feed(&self, session: SessionId, link: LinkNumber) -> LinkFeed {
        LinkFeed {
            feed: self.feed.clone(),
            session,
            link,
        }
    }

    /// Replaces any link to `session` with a new connection; the answering side takes the data
    /// channel the offerer made.
    fn connect(
        &mut self,
        session: SessionId,
        number: LinkNumber,
        ice_servers: &[IceServer],
        answering: bool,
    ) -> Option<LinkFeed> {
        self.links.remove(&session);
        let feed = self.link_feed(session, number);
        let connection =
            RtcPeerConnection::new_with_configuration(&configuration(ice_servers)).ok()?;
        let failed = feed.clone();
        let watched = connection.clone();
        let on_state_change = Closure::<dyn FnMut(Event)>::new(move |_| {
            if matches!(
                watched.connection_state(),
                RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed
            ) {
                failed.send(LinkEvent::Down);
            }
        });
        connection.set_onconnectionstatechange(Some(on_state_change.as_ref().unchecked_ref()));
        let data_channel = Rc::new(RefCell::new(None));
        let on_data_channel = answering.then(|| {
            let slot = data_channel.clone();
            let feed = feed.clone();
            let closure = Closure::<dyn FnMut(RtcDataChannelEvent)>::new(
                move |event: RtcDataChannelEvent| {
                    let channel = event.channel();
                    if channel.label() == DATA_CHANNEL_LABEL {
                        *slot.borrow_mut() = Some(DataChannel::attach(channel, &feed));
                    } else {
                        channel.close();
                    }
                },
            );
            connection.set_ondatachannel(Some(closure.as_ref().unchecked_ref()));
            closure
        });
        self.links.insert(
            session,
            PeerLink {
                number,
                connection,
                data_channel,
                _on_state_change: on_state_change,
                _on_data_channel: on_data_channel,
            },
        );
        Some(feed)
    }
}

fn configuration(ice_servers: &[IceServer]) -> RtcConfiguration {
    let servers = js_sys::Array::new();
    for server in ice_servers {
        let entry = RtcIceServer::new();
        let urls: js_sys::Array = server
            .urls
            .iter()
            .map(|url| JsValue::from_str(url))
            .collect();
        entry.set_urls(&urls);
        if let Some(username) = &server.username {
            entry.set_username(username);
        }
        if let Some(credential) = &server.credential {
            entry.set_credential(credential);
        }
        servers.push(&entry);
    }
    let configuration = RtcConfiguration::new();
    configuration.set_ice_servers(&servers);
    configuration
}

/// Runs one side of the offer/answer exchange and reports the description, or the failure.
fn negotiate(
    feed: LinkFeed,
    steps: impl std::future::Future<Output = Result<String, JsValue>> + 'static,
) {
    wasm_bindgen_futures::spawn_local(async move {
        let event = match steps.await {
            Ok(sdp) => LinkEvent::Description(sdp),
            Err(_) => LinkEvent::Down,
        };
        feed.send(event);
    });
}

/// The local description once ICE gathering is complete (or after [`ICE_GATHERING_LIMIT_MILLIS`]).
async fn complete_description(connection: &RtcPeerConnection) -> Result<String, JsValue> {
    let mut waited = 0;
    while connection.ice_gathering_state() != RtcIceGatheringState::Complete
        && u64::from(waited) < ICE_GATHERING_LIMIT_MILLIS
    {
        gloo_timers::future::TimeoutFuture::new(GATHERING_POLL_MILLIS).await;
        waited += GATHERING_POLL_MILLIS;
    }
    connection
        .local_description()
        .map(|description| description.sdp())
        .ok_or_else(|| JsValue::from_str("no local description"))
}
