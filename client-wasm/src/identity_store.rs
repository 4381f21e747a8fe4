//! The member's identity in the browser: created on first visit from the browser's CSPRNG, kept
//! in its own IndexedDB database (one per browser profile, shared by all relays), exported to
//! and imported from an identity file; and the relay keys pinned at first contact.
//!
//! Schema: version 1 has the `identity` store; version 2 adds `relay_keys`. Upgrading keeps
//! the identity (IndexedDB creates the missing store and keeps the listed ones).

use peerchat_shared::identity::{PublicKey, SecretKey};
use peerchat_shared::identity_export::Identity;
use peerchat_shared::store::StoreError;
use rexie::{ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::JsValue;

/// The database that holds the identity.
pub const IDENTITY_DATABASE: &str = "peerchat-identity";
pub const IDENTITY_SCHEMA_VERSION: u32 = 2;
const IDENTITY_STORE: &str = "identity";
/// Relay URL -> the relay's public key (text form), pinned at first contact.
const RELAY_KEYS_STORE: &str = "relay_keys";
/// The identity is one record under this key, holding the identity file's text.
const SELF_KEY: &str = "self";

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

/// Bytes from the browser's `crypto.getRandomValues`.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let crypto = web_sys::window()
        .ok_or_else(|| StoreError("no window".into()))?
        .crypto()
        .map_err(|_| StoreError("the browser offers no crypto.getRandomValues".into()))?;
    let mut bytes = [0u8; N];
    crypto
        .get_random_values_with_u8_array(&mut bytes)
        .map_err(|_| StoreError("crypto.getRandomValues failed".into()))?;
    Ok(bytes)
}

/// What pinning found for a relay's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKeyCheck {
    /// First contact with this relay: its key is now pinned.
    Pinned,
    /// The relay presents the key pinned earlier.
    Known,
}

/// Why a relay's key is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the relay at {url} now presents key {offered}, but this browser first met it with key {pinned}: it may be another server posing as it. If its operator changed the key on purpose, they will have said so.")]
    Changed {
        url: String,
        pinned: PublicKey,
        offered: PublicKey,
    },
}

/// Where the identity lives.
#[derive(Debug)]
pub struct IdentityStore {
    database: Rexie,
}

impl IdentityStore {
    pub async fn open(name: &str) -> Result<Self, StoreError> {
        let database = Rexie::builder(name)
            .version(IDENTITY_SCHEMA_VERSION)
            .add_object_store(ObjectStore::new(IDENTITY_STORE))
            .add_object_store(ObjectStore::new(RELAY_KEYS_STORE))
            .build()
            .await
            .map_err(failed)?;
        Ok(Self { database })
    }

    pub async fn load(&self) -> Result<Option<Identity>, StoreError> {
        let transaction = self
            .database
            .transaction(&[IDENTITY_STORE], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let store = transaction.store(IDENTITY_STORE).map_err(failed)?;
        let Some(record) = store
            .get(JsValue::from_str(SELF_KEY))
            .await
            .map_err(failed)?
        else {
            return Ok(None);
        };
        let text = record
            .as_string()
            .ok_or_else(|| StoreError("the stored identity is not text".into()))?;
        Identity::from_file(&text).map(Some).map_err(failed)
    }

    pub async fn save(&self, identity: &Identity) -> Result<(), StoreError> {
        let transaction = self
            .database
            .transaction(&[IDENTITY_STORE], TransactionMode::ReadWrite)
            .map_err(failed)?;
        let store = transaction.store(IDENTITY_STORE).map_err(failed)?;
        let record = JsValue::from_str(&identity.to_file());
        store
            .put(&record, Some(&JsValue::from_str(SELF_KEY)))
            .await
            .map_err(failed)?;
        transaction.done().await.map_err(failed)?;
        Ok(())
    }

    /// The stored identity, or a new one (saved before it is returned).
    pub async fn load_or_create(&self) -> Result<Identity, StoreError> {
        if let Some(identity) = self.load().await? {
            return Ok(identity);
        }
        let identity = Identity {
            key: SecretKey::from_seed(random_bytes()?),
            display_name: None,
        };
        self.save(&identity).await?;
        Ok(identity)
    }

    /// The key pinned for the relay at `url`, if this browser has met it.
    pub async fn pinned_relay_key(&self, url: &str) -> Result<Option<PublicKey>, StoreError> {
        let transaction = self
            .database
            .transaction(&[RELAY_KEYS_STORE], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let store = transaction.store(RELAY_KEYS_STORE).map_err(failed)?;
        let pinned = store.get(JsValue::from_str(url)).await.map_err(failed)?;
        pinned
            .and_then(|value| value.as_string())
            .map(|text| text.parse().map_err(failed))
            .transpose()
    }

    /// Pins the key of the relay at `url` on first contact; afterwards, a different key is an
    /// error and the pin is left as it was.
    pub async fn check_relay_key(
        &self,
        url: &str,
        offered: &PublicKey,
    ) -> Result<RelayKeyCheck, RelayKeyError> {
        let transaction = self
            .database
            .transaction(&[RELAY_KEYS_STORE], TransactionMode::ReadWrite)
            .map_err(failed)?;
        let store = transaction.store(RELAY_KEYS_STORE).map_err(failed)?;
        let url_key = JsValue::from_str(url);
        let pinned = store.get(url_key.clone()).await.map_err(failed)?;
        let check = match pinned.and_then(|value| value.as_string()) {
            None => {
                store
                    .put(&JsValue::from_str(&offered.to_string()), Some(&url_key))
                    .await
                    .map_err(failed)?;
                RelayKeyCheck::Pinned
            }
            Some(text) => {
                let pinned: PublicKey = text.parse().map_err(failed)?;
                if pinned != *offered {
                    return Err(RelayKeyError::Changed {
                        url: url.to_owned(),
                        pinned,
                        offered: *offered,
                    });
                }
                RelayKeyCheck::Known
            }
        };
        transaction.done().await.map_err(failed)?;
        Ok(check)
    }

    /// Replaces the stored identity with the one in `file` (an export from another browser).
    pub async fn import(&self, file: &str) -> Result<Identity, StoreError> {
        let identity = Identity::from_file(file).map_err(failed)?;
        self.save(&identity).await?;
        Ok(identity)
    }
}
