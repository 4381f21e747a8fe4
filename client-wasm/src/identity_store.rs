//! The member's identity in the browser: created on first visit from the browser's CSPRNG, kept
//! in its own IndexedDB database (one per browser profile, shared by all relays), exported to
//! and imported from an identity file.

use peerchat_shared::identity::SecretKey;
use peerchat_shared::identity_export::Identity;
use peerchat_shared::store::StoreError;
use rexie::{ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::JsValue;

/// The database that holds the identity.
pub const IDENTITY_DATABASE: &str = "peerchat-identity";
const IDENTITY_STORE: &str = "identity";
/// The identity is one record under this key, holding the identity file's text.
const SELF_KEY: &str = "self";

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

/// 32 bytes from the browser's `crypto.getRandomValues`.
fn random_seed() -> Result<[u8; 32], StoreError> {
    let crypto = web_sys::window()
        .ok_or_else(|| StoreError("no window".into()))?
        .crypto()
        .map_err(|_| StoreError("the browser offers no crypto.getRandomValues".into()))?;
    let mut seed = [0u8; 32];
    crypto
        .get_random_values_with_u8_array(&mut seed)
        .map_err(|_| StoreError("crypto.getRandomValues failed".into()))?;
    Ok(seed)
}

/// Where the identity lives.
#[derive(Debug)]
pub struct IdentityStore {
    database: Rexie,
}

impl IdentityStore {
    pub async fn open(name: &str) -> Result<Self, StoreError> {
        let database = Rexie::builder(name)
            .version(1)
            .add_object_store(ObjectStore::new(IDENTITY_STORE))
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
            key: SecretKey::from_seed(random_seed()?),
            display_name: None,
        };
        self.save(&identity).await?;
        Ok(identity)
    }

    /// Replaces the stored identity with the one in `file` (an export from another browser).
    pub async fn import(&self, file: &str) -> Result<Identity, StoreError> {
        let identity = Identity::from_file(file).map_err(failed)?;
        self.save(&identity).await?;
        Ok(identity)
    }
}
