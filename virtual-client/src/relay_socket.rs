//! The relay's WebSocket (tokio-tungstenite) in a task of its own: its events go to the driver's
//! queue tagged with the socket's number.

use futures_util::{SinkExt as _, StreamExt as _};
use peerchat_shared::node::{NodeInput, SocketEvent, SocketNumber};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Frames waiting to go to the relay.
const RELAY_SEND_QUEUE: usize = 1_024;

/// One open relay connection: a task reading and writing the WebSocket.
pub(crate) struct RelaySocket {
    pub(crate) number: SocketNumber,
    pub(crate) frames: mpsc::Sender<String>,
    task: JoinHandle<()>,
}

impl Drop for RelaySocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RelaySocket {
    pub(crate) fn open(url: String, number: SocketNumber, feed: mpsc::Sender<NodeInput>) -> Self {
        let (frames, mut outgoing) = mpsc::channel::<String>(RELAY_SEND_QUEUE);
        let task = tokio::spawn(async move {
            let report = |event| {
                feed.send(NodeInput::Socket {
                    socket: number,
                    event,
                })
            };
            let Ok((socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
                let _ = report(SocketEvent::Closed).await;
                return;
            };
            let _ = report(SocketEvent::Opened).await;
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
                            let frame = SocketEvent::Frame(text.as_str().to_owned());
                            if report(frame).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let _ = report(SocketEvent::Frame(String::new())).await;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
            let _ = writer.close().await;
            let _ = report(SocketEvent::Closed).await;
        });
        Self {
            number,
            frames,
            task,
        }
    }
}
