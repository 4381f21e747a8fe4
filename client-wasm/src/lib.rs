//! The browser client's WebAssembly core: the API the UI in `web/` calls.
//!
//! [`Me`] is the member's identity in this browser; [`Client`] is one connection to one relay,
//! driving `shared`'s sans-IO [`ClientSession`](peerchat_shared::client::ClientSession) over a
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

#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
mod driver;
#[cfg(target_arch = "wasm32")]
pub mod identity_store;
#[cfg(target_arch = "wasm32")]
pub mod indexeddb;
#[cfg(target_arch = "wasm32")]
pub mod relay_records;

#[cfg(target_arch = "wasm32")]
pub use client::Client;

/// The member using this browser, for the page.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
#[derive(Debug)]
pub struct Me {
    identity: peerchat_shared::identity_export::Identity,
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
impl Me {
    /// This browser's identity, created and saved on the first visit.
    #[wasm_bindgen(js_name = loadOrCreate)]
    pub async fn load_or_create() -> Result<Me, JsError> {
        let store = identity_store::IdentityStore::open(identity_store::IDENTITY_DATABASE).await?;
        Ok(Me {
            identity: store.load_or_create().await?,
        })
    }

    /// Replaces this browser's identity with an exported one.
    #[wasm_bindgen(js_name = importFile)]
    pub async fn import_file(file: String) -> Result<Me, JsError> {
        let store = identity_store::IdentityStore::open(identity_store::IDENTITY_DATABASE).await?;
        Ok(Me {
            identity: store.import(&file).await?,
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
