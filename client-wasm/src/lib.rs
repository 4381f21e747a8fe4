//! The browser client's WebAssembly core: the API the UI in `web/` calls.
//!
//! [`Client`] is one connection to one relay, as this browser's member (whose identity it
//! holds), driving `shared`'s sans-IO [`ClientSession`](peerchat_shared::client::ClientSession) over a
//! WebSocket, with history, outbox and profiles in that relay's IndexedDB database.

use peerchat_shared::identity::PublicKey;
use wasm_bindgen::prelude::*;

/// The protocol version this client speaks.
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u32 {
    peerchat_shared::PROTOCOL_VERSION
}

/// The display fingerprint of a public key given in its base64url text form.
#[wasm_bindgen(js_name = keyFingerprint)]
pub fn key_fingerprint(public_key: &str) -> Result<String, JsError> {
    let key: PublicKey = public_key
        .parse()
        .map_err(|error| JsError::new(&format!("not a public key: {error}")))?;
    Ok(key.fingerprint())
}

/// The RGBA pixels (`width` × `height`, 4 bytes each) of an image preview (a BlurHash), to
/// draw before the image itself arrives; `undefined` when it is not a BlurHash.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen(js_name = previewPixels)]
pub fn preview_pixels(preview: &str, width: u32, height: u32) -> Option<Vec<u8>> {
    attachments::preview_pixels(preview, width.min(64), height.min(64))
}

#[cfg(target_arch = "wasm32")]
pub mod attachment_store;
#[cfg(target_arch = "wasm32")]
mod attachments;
#[cfg(target_arch = "wasm32")]
mod chunk_writer;
#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
mod driver;
#[cfg(target_arch = "wasm32")]
mod history_writer;
#[cfg(target_arch = "wasm32")]
pub mod identity_store;
#[cfg(target_arch = "wasm32")]
pub mod indexeddb;
#[cfg(target_arch = "wasm32")]
mod page;
#[cfg(target_arch = "wasm32")]
mod peer_links;
#[cfg(target_arch = "wasm32")]
pub mod relay_records;
#[cfg(target_arch = "wasm32")]
mod relay_socket;

#[cfg(target_arch = "wasm32")]
pub use client::Client;

/// Replaces this browser's identity with the one in an exported identity file. The page
/// reloads afterwards, so every relay connection starts again with the imported key.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen(js_name = importIdentity)]
pub async fn import_identity(file: String) -> Result<(), JsError> {
    let store = identity_store::IdentityStore::open(identity_store::IDENTITY_DATABASE).await?;
    store.import(&file).await?;
    Ok(())
}
