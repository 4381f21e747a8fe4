//! The browser client's WebAssembly core: the API the UI in `web/` calls.
//!
//! It grows with the browser-client issue (connection, login, IndexedDB history); for now it
//! exposes the protocol facts the page shows, computed by the same `shared` code the relay runs.

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
pub mod identity_store;
#[cfg(target_arch = "wasm32")]
pub mod indexeddb;

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

    /// The identity file to save; it contains the secret key.
    #[wasm_bindgen(js_name = exportFile)]
    pub fn export_file(&self) -> String {
        self.identity.to_file()
    }
}
