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
pub mod indexeddb;
