//! The relay's WebSocket: its events go to the driver's queue tagged with the socket's number.

use crate::driver::Feed;
use futures_channel::mpsc;
use peerchat_shared::node::{NodeInput, SocketEvent, SocketNumber};
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

/// An open WebSocket and the closures it calls, which live exactly as long as it does.
pub(crate) struct Socket {
    pub(crate) number: SocketNumber,
    pub(crate) web_socket: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    pub(crate) fn open(
        url: &str,
        number: SocketNumber,
        feed: &mpsc::Sender<Feed>,
    ) -> Result<Self, JsValue> {
        let web_socket = WebSocket::new(url)?;
        let sender = |feed: &mpsc::Sender<Feed>| {
            let mut feed = feed.clone();
            move |event: SocketEvent| {
                let input = NodeInput::Socket {
                    socket: number,
                    event,
                };
                if feed.try_send(Feed::Input(input)).is_err() {
                    let _ = feed.try_send(Feed::SocketOverflow(number));
                }
            }
        };
        let mut opened = sender(feed);
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| opened(SocketEvent::Opened));
        let mut received = sender(feed);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            // The relay sends text frames only; anything else is a malformed frame.
            let text = event.data().as_string().unwrap_or_default();
            received(SocketEvent::Frame(text));
        });
        let mut closed = sender(feed);
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_| closed(SocketEvent::Closed));
        web_socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        web_socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        web_socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Self {
            number,
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
