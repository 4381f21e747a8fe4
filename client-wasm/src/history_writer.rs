//! Peer history written to IndexedDB beside the driver: the driver hands over batches and page
//! events, in order, and goes on verifying what comes next.

use crate::indexeddb::IndexedDbStore;
use crate::page::{EventSink, HistoryForPage};
use futures_channel::mpsc;
use futures_util::StreamExt as _;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::MessageView;
use peerchat_shared::message::VerifiedEnvelope;
use peerchat_shared::store::HistoryStore as _;
use std::rc::Rc;
use wasm_bindgen::JsValue;

/// What the mesh has for IndexedDB and the page, carried out in order by [`write_history`].
pub(crate) enum HistoryWork {
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
pub(crate) async fn write_history(
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
