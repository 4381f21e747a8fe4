//! What the page is told: one callback called with one plain object per event, and the shapes
//! of the events the driver adds to the session's ([`ClientEvent`]).

use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::{ClientEvent, MessageView};
use peerchat_shared::mesh::MeshStats;
use peerchat_shared::sync::HistoryState;
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// The page's callback, given one event object at a time.
#[derive(Clone)]
pub(crate) struct EventSink(pub js_sys::Function);

impl EventSink {
    pub(crate) fn emit(&self, event: &impl Serialize) {
        if let Some(value) = Self::to_value(event) {
            self.call(&value);
        }
    }

    pub(crate) fn to_value(event: &impl Serialize) -> Option<JsValue> {
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        event
            .serialize(&serializer)
            .map_err(|error| web_sys::console::error_1(&error.to_string().into()))
            .ok()
    }

    pub(crate) fn call(&self, value: &JsValue) {
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
pub(crate) struct HistoryForPage<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) channel: &'a ChannelName,
    pub(crate) messages: Vec<MessageView>,
}

/// A channel's history state for the page.
#[derive(Serialize)]
pub(crate) struct HistoryStateForPage<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) channel: &'a ChannelName,
    #[serde(flatten)]
    pub(crate) state: HistoryState,
}

/// The peer links and what came over them, for the page.
#[derive(Serialize)]
pub(crate) struct PeersForPage {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    #[serde(flatten)]
    pub(crate) stats: MeshStats,
}

/// Where a download stands, for the page.
#[derive(Serialize)]
pub(crate) struct AttachmentForPage<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// The attachment's root (base64url) and size: what the page matches it by.
    pub(crate) root: String,
    pub(crate) size: u64,
    /// `fetching`, `ready` (all here: the page compares `sha256` with each description of it),
    /// `unavailable` (nobody linked holds it; retried when someone comes), `declined` (too
    /// many files are being fetched; open it again later), `no_room`, `failed`, `cancelled` or
    /// `dropped` (deleted to make room for another; open it to fetch it again).
    pub(crate) state: &'static str,
    /// The SHA-256 of the bytes (base64url, as descriptions have it), once `ready`.
    pub(crate) sha256: Option<String>,
    pub(crate) held: u64,
    pub(crate) total: u64,
    /// Fingerprints of the peers that sent chunks.
    pub(crate) peers: Vec<String>,
    pub(crate) bytes_per_second: f64,
    pub(crate) message: Option<&'a str>,
}
