//! [`Client`]: the page's handle on one relay connection. It opens the stores, builds the
//! session from what earlier visits kept, and starts the driver task; its methods queue the
//! member's actions for that task or read history straight from IndexedDB.

use crate::attachment_store::AttachmentRecord;
use crate::attachments::{prepare_upload, ImageSample, UploadWatch};
use crate::driver::{fresh_nonce, Driver, Feed, INPUT_QUEUE, MAX_AUTOMATIC_FETCH_BYTES};
use crate::identity_store::{random_bytes, IdentityStore, IDENTITY_DATABASE};
use crate::indexeddb::IndexedDbStore;
use crate::page::EventSink;
use futures_channel::mpsc;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::{ClientConfig, MessageView};
use peerchat_shared::encoding::fixed_from_base64url;
use peerchat_shared::identity_export::Identity;
use peerchat_shared::ids::MessageId;
use peerchat_shared::membership::{DisplayName, InviteToken};
use peerchat_shared::message::{Attachment, MessageBody};
use peerchat_shared::node::{MemberAction, Node, NodeConfig, NodeInput};
use peerchat_shared::store::HistoryStore as _;
use peerchat_shared::sync::SyncLimits;
use peerchat_shared::transfer::AttachmentKey;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// Most messages one history query returns.
const MAX_HISTORY_PAGE: u32 = 1_000;

/// The IndexedDB database holding the history and records of the relay at `relay_url`.
pub fn relay_database_name(relay_url: &str) -> String {
    format!("peerchat-relay:{relay_url}")
}

fn to_js(value: &impl serde::Serialize) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|error| JsError::new(&error.to_string()))
}

fn channel(name: &str) -> Result<ChannelName, JsError> {
    ChannelName::new(name).map_err(|error| JsError::new(&format!("{name:?}: {error}")))
}

/// An attachment named by its root (base64url) and size, as the page's events give them.
fn attachment_key(root: &str, size: f64) -> Result<AttachmentKey, JsError> {
    let root = fixed_from_base64url(root).map_err(|_| JsError::new("not an attachment root"))?;
    if !(0.0..=9_007_199_254_740_991.0).contains(&size) || size.fract() != 0.0 {
        return Err(JsError::new("not an attachment size"));
    }
    Ok(AttachmentKey {
        root,
        size: size as u64,
    })
}

/// One member's connection to one relay. See the module documentation.
#[wasm_bindgen]
pub struct Client {
    feed: mpsc::Sender<Feed>,
    history: Rc<IndexedDbStore>,
    identity_store: Rc<IdentityStore>,
    identity: Identity,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("member", &self.identity.key.public_key())
            .finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl Client {
    /// Connects to the relay at `relay_url` (`ws://…/ws` or `wss://…/ws`) as this browser's
    /// member. `invite` is the token from a join link, if any. `on_event` is called with one
    /// plain object per event; see `web/app.js` for the kinds.
    pub async fn start(
        relay_url: String,
        invite: Option<String>,
        on_event: js_sys::Function,
    ) -> Result<Client, JsError> {
        let invite = invite
            .map(|text| text.parse::<InviteToken>())
            .transpose()
            .map_err(|_| JsError::new("This invite link is damaged: ask for a new one."))?;
        let identity_store = Rc::new(IdentityStore::open(IDENTITY_DATABASE).await?);
        let identity = identity_store.load_or_create().await?;
        let history = Rc::new(IndexedDbStore::open(&relay_database_name(&relay_url)).await?);
        let config = ClientConfig {
            key: identity.key.clone(),
            display_name: identity.display_name.clone(),
            pinned_relay: identity_store.pinned_relay_key(&relay_url).await?,
            certificate: history.certificate().await?,
            invite,
            outbox: history.outbox().await?,
            known_channels: history.known_channels().await?,
            random_seed: u64::from_le_bytes(random_bytes()?),
        };
        let node = Node::new(
            crate::driver::now(),
            NodeConfig {
                session: config,
                mesh_seed: u64::from_le_bytes(random_bytes()?),
                sync_limits: SyncLimits::default(),
            },
        );
        let (feed, inputs) = mpsc::channel(INPUT_QUEUE);
        let driver = Driver::new(
            node,
            relay_url,
            history.clone(),
            identity_store.clone(),
            EventSink(on_event),
            feed.clone(),
        );
        wasm_bindgen_futures::spawn_local(driver.run(inputs));
        Ok(Client {
            feed,
            history,
            identity_store,
            identity,
        })
    }

    fn queue(&mut self, action: MemberAction) -> Result<(), JsError> {
        self.feed_driver(Feed::Input(NodeInput::Member(action)))
    }

    fn feed_driver(&mut self, feed: Feed) -> Result<(), JsError> {
        self.feed
            .try_send(feed)
            .map_err(|_| JsError::new("The client is busy; try again in a moment."))
    }

    /// Queues a text message; returns its nonce, which the `pending` and `message` events carry.
    pub fn send(&mut self, channel_name: &str, text: &str) -> Result<String, JsError> {
        self.send_body(channel_name, MessageBody::text(text))
    }

    /// Queues a message carrying `attachments` (descriptions from `prepareAttachment`) with
    /// `text` as its caption (may be empty); returns its nonce.
    #[wasm_bindgen(js_name = sendWithAttachments)]
    pub fn send_with_attachments(
        &mut self,
        channel_name: &str,
        text: &str,
        attachments: JsValue,
    ) -> Result<String, JsError> {
        let attachments: Vec<Attachment> = serde_wasm_bindgen::from_value(attachments)
            .map_err(|error| JsError::new(&format!("not attachment descriptions: {error}")))?;
        self.send_body(
            channel_name,
            MessageBody::with_attachments(text, attachments),
        )
    }

    /// Hashes `file` and stores it chunk by chunk, ready to be served, and resolves to its
    /// description for [`Self::send_with_attachments`]. `image` is `null` or what the page
    /// measured of an image: `{width, height, sample_width, sample_height, pixels}` (RGBA of
    /// a small drawing, for the preview). `on_progress(done, total)` is called as it goes;
    /// aborting `signal` cancels it.
    #[wasm_bindgen(js_name = prepareAttachment)]
    pub fn prepare_attachment(
        &self,
        file: web_sys::File,
        image: JsValue,
        on_progress: js_sys::Function,
        signal: Option<web_sys::AbortSignal>,
    ) -> js_sys::Promise {
        let history = self.history.clone();
        let feed = self.feed.clone();
        let image = ImageSample::from_js(&image);
        wasm_bindgen_futures::future_to_promise(async move {
            let watch = UploadWatch {
                on_progress,
                signal,
            };
            let attachment = prepare_upload(&history, &feed, &file, image, &watch)
                .await
                .map_err(|error| JsError::new(&error))?;
            Ok(to_js(&attachment)?)
        })
    }

    /// Opens an attachment (its description, as in a message): fetches what this browser does
    /// not hold of it; `attachment` events follow.
    #[wasm_bindgen(js_name = openAttachment)]
    pub fn open_attachment(&mut self, attachment: JsValue) -> Result<(), JsError> {
        let attachment: Attachment = serde_wasm_bindgen::from_value(attachment)
            .map_err(|error| JsError::new(&format!("not an attachment description: {error}")))?;
        MessageBody::with_attachments("", vec![attachment.clone()])
            .validate()
            .map_err(|error| JsError::new(&error.to_string()))?;
        self.feed_driver(Feed::Download(AttachmentRecord::described(
            attachment, false,
        )))
    }

    /// Stops fetching the attachment `root`/`size` (the chunks stored so far are kept).
    #[wasm_bindgen(js_name = cancelAttachment)]
    pub fn cancel_attachment(&mut self, root: &str, size: f64) -> Result<(), JsError> {
        let key = attachment_key(root, size)?;
        self.feed_driver(Feed::CancelDownload(key))
    }

    /// Resolves to the file `attachment` (its description, as in a message) describes, as a
    /// `Blob` of its media type, put together from its chunks whose SHA-256 matches its own,
    /// or `null` when it is not all here or does not match that description.
    #[wasm_bindgen(js_name = attachmentBlob)]
    pub fn attachment_blob(&self, attachment: JsValue) -> Result<js_sys::Promise, JsError> {
        let attachment: Attachment = serde_wasm_bindgen::from_value(attachment)
            .map_err(|error| JsError::new(&format!("not an attachment description: {error}")))?;
        let history = self.history.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let blob = history
                .assemble(&attachment)
                .await
                .map_err(|error| JsError::new(&error.to_string()))?;
            Ok(blob.map_or(JsValue::NULL, JsValue::from))
        }))
    }

    /// Resolves to `{used, limit, automaticFetch}`: the bytes the attachments kept take, the
    /// member's storage limit (`null` until one is set), and the size up to which files are
    /// fetched as their messages arrive.
    #[wasm_bindgen(js_name = storageUse)]
    pub fn storage_use(&mut self) -> Result<js_sys::Promise, JsError> {
        let (reply, answer) = futures_channel::oneshot::channel();
        self.feed_driver(Feed::StorageUse(reply))?;
        let history = self.history.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let use_ = answer
                .await
                .map_err(|_| JsError::new("the client has stopped"))?;
            let limit = history.storage_limit().await.map_err(JsError::from)?;
            Ok(to_js(&serde_json::json!({
                "used": use_.used,
                "limit": limit,
                "automaticFetch": use_.automatic_fetch,
            }))?)
        }))
    }

    /// Sets the storage limit for attachments, in bytes.
    #[wasm_bindgen(js_name = setStorageLimit)]
    pub fn set_storage_limit(&mut self, bytes: f64) -> Result<js_sys::Promise, JsError> {
        if !(bytes.is_finite() && bytes >= 0.0) {
            return Err(JsError::new("a storage limit is a number of bytes"));
        }
        let bytes = bytes as u64;
        self.feed_driver(Feed::StorageLimit(bytes))?;
        let history = self.history.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            history
                .save_storage_limit(bytes)
                .await
                .map_err(JsError::from)?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Sets the size up to which the files of arriving messages are fetched without being
    /// opened (0: only files the member opens), in bytes, at most 64 MiB.
    #[wasm_bindgen(js_name = setAutomaticFetchLimit)]
    pub fn set_automatic_fetch_limit(&mut self, bytes: f64) -> Result<js_sys::Promise, JsError> {
        if !(bytes.is_finite() && (0.0..=MAX_AUTOMATIC_FETCH_BYTES as f64).contains(&bytes)) {
            return Err(JsError::new(&format!(
                "files are fetched as they arrive up to at most {} bytes",
                MAX_AUTOMATIC_FETCH_BYTES
            )));
        }
        let bytes = bytes as u64;
        self.feed_driver(Feed::AutomaticFetchLimit(bytes))?;
        let history = self.history.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            history
                .save_automatic_fetch_limit(bytes)
                .await
                .map_err(JsError::from)?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    fn send_body(&mut self, channel_name: &str, body: MessageBody) -> Result<String, JsError> {
        body.validate()
            .map_err(|error| JsError::new(&format!("This message cannot be sent: {error}.")))?;
        let nonce = fresh_nonce()?;
        self.queue(MemberAction::Send {
            channel: channel(channel_name)?,
            body,
            nonce,
        })?;
        Ok(nonce.to_string())
    }

    /// Joins (and creates, if new) the channel `name`.
    pub fn join(&mut self, name: &str) -> Result<(), JsError> {
        let channel = channel(name)?;
        self.queue(MemberAction::Join(channel))
    }

    /// Saves the member's display name and tells the relay.
    #[wasm_bindgen(js_name = setDisplayName)]
    pub fn set_display_name(&mut self, name: &str) -> Result<js_sys::Promise, JsError> {
        let name = DisplayName::new(name.trim()).map_err(|_| {
            JsError::new("A name has 1 to 48 characters, without control characters.")
        })?;
        self.identity.display_name = Some(name.clone());
        self.queue(MemberAction::SetDisplayName(name))?;
        let (store, identity) = (self.identity_store.clone(), self.identity.clone());
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            store.save(&identity).await.map_err(JsError::from)?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Up to `limit` stored messages of `channel_name` older than the id `before` (or the newest
    /// when absent), newest first.
    pub fn history(
        &self,
        channel_name: &str,
        before: Option<String>,
        limit: u32,
    ) -> Result<js_sys::Promise, JsError> {
        let channel = channel(channel_name)?;
        let before = before
            .map(|id| id.parse::<MessageId>())
            .transpose()
            .map_err(|_| JsError::new("not a message id"))?;
        let history = self.history.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let page = history
                .page_before(&channel, before, limit.min(MAX_HISTORY_PAGE) as usize)
                .await
                .map_err(JsError::from)?;
            let views: Vec<MessageView> = page.iter().map(MessageView::from).collect();
            Ok(to_js(&views)?)
        }))
    }

    /// The display names of members seen before: `[{member, display_name, …}]`.
    pub fn profiles(&self) -> js_sys::Promise {
        let history = self.history.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let profiles = history.profiles().await.map_err(JsError::from)?;
            Ok(to_js(&profiles)?)
        })
    }

    #[wasm_bindgen(getter, js_name = publicKey)]
    pub fn public_key(&self) -> String {
        self.identity.key.public_key().to_string()
    }

    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> String {
        self.identity.key.public_key().fingerprint()
    }

    #[wasm_bindgen(getter, js_name = displayName)]
    pub fn display_name(&self) -> Option<String> {
        self.identity
            .display_name
            .as_ref()
            .map(|name| name.as_str().to_owned())
    }

    /// The identity file to save; it contains the secret key.
    #[wasm_bindgen(js_name = exportFile)]
    pub fn export_file(&self) -> String {
        self.identity.to_file()
    }
}
