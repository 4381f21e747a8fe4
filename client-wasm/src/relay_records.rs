//! The member's other records for one relay, kept in that relay's history database: the outbox
//! of unacknowledged messages, the membership certificate and known channels (`meta`), and the
//! verified profiles that name authors in history. Each record is the JSON text of a `shared`
//! type, so its rules are checked again when it is read back.

use crate::indexeddb::{failed, IndexedDbStore};
use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::OutboxEntry;
use peerchat_shared::membership::{MembershipCertificate, Profile};
use peerchat_shared::store::StoreError;
use rexie::TransactionMode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::JsValue;

/// Unacknowledged messages, keyed by nonce (text form).
pub const OUTBOX: &str = "outbox";
/// Single records under fixed keys: [`CERTIFICATE`], [`CHANNELS`].
pub const META: &str = "meta";
/// Profiles whose member signature was checked, keyed by member key (text form).
pub const PROFILES: &str = "profiles";
const CERTIFICATE: &str = "certificate";
const CHANNELS: &str = "channels";

impl IndexedDbStore {
    pub(crate) async fn put_json(
        &self,
        store_name: &str,
        key: &str,
        value: &impl Serialize,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(value).map_err(failed)?;
        let transaction = self
            .database
            .transaction(&[store_name], TransactionMode::ReadWrite)
            .map_err(failed)?;
        let store = transaction.store(store_name).map_err(failed)?;
        store
            .put(&JsValue::from_str(&text), Some(&JsValue::from_str(key)))
            .await
            .map_err(failed)?;
        transaction.done().await.map_err(failed)?;
        Ok(())
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        store_name: &str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let transaction = self
            .database
            .transaction(&[store_name], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let store = transaction.store(store_name).map_err(failed)?;
        let record = store.get(JsValue::from_str(key)).await.map_err(failed)?;
        record
            .and_then(|value| value.as_string())
            .map(|text| serde_json::from_str(&text).map_err(failed))
            .transpose()
    }

    async fn delete_record(&self, store_name: &str, key: &str) -> Result<(), StoreError> {
        let transaction = self
            .database
            .transaction(&[store_name], TransactionMode::ReadWrite)
            .map_err(failed)?;
        let store = transaction.store(store_name).map_err(failed)?;
        store.delete(JsValue::from_str(key)).await.map_err(failed)?;
        transaction.done().await.map_err(failed)?;
        Ok(())
    }

    /// Every record of `store_name`. Records that no longer parse are skipped (they were written
    /// by this code, so this only happens if the browser's storage was damaged).
    pub(crate) async fn all_json<T: DeserializeOwned>(
        &self,
        store_name: &str,
    ) -> Result<Vec<T>, StoreError> {
        let transaction = self
            .database
            .transaction(&[store_name], TransactionMode::ReadOnly)
            .map_err(failed)?;
        let store = transaction.store(store_name).map_err(failed)?;
        let records = store.get_all(None, None).await.map_err(failed)?;
        Ok(records
            .into_iter()
            .filter_map(|value| value.as_string())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect())
    }

    pub async fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.all_json(OUTBOX).await
    }

    pub async fn outbox_put(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.put_json(OUTBOX, &entry.nonce.to_string(), entry).await
    }

    pub async fn outbox_remove(
        &self,
        nonce: &peerchat_shared::message::ClientNonce,
    ) -> Result<(), StoreError> {
        self.delete_record(OUTBOX, &nonce.to_string()).await
    }

    pub async fn certificate(&self) -> Result<Option<MembershipCertificate>, StoreError> {
        self.get_json(META, CERTIFICATE).await
    }

    pub async fn save_certificate(
        &self,
        certificate: Option<&MembershipCertificate>,
    ) -> Result<(), StoreError> {
        match certificate {
            Some(certificate) => self.put_json(META, CERTIFICATE, certificate).await,
            None => self.delete_record(META, CERTIFICATE).await,
        }
    }

    pub async fn known_channels(&self) -> Result<Vec<ChannelName>, StoreError> {
        Ok(self.get_json(META, CHANNELS).await?.unwrap_or_default())
    }

    pub async fn save_known_channels(&self, channels: &[ChannelName]) -> Result<(), StoreError> {
        self.put_json(META, CHANNELS, &channels).await
    }

    /// Keeps `profile` unless a newer one of the same member is kept already.
    pub async fn save_profile(&self, profile: &Profile) -> Result<(), StoreError> {
        let key = profile.member.to_string();
        let kept: Option<Profile> = self.get_json(PROFILES, &key).await?;
        if kept.is_some_and(|kept| kept.updated_at >= profile.updated_at) {
            return Ok(());
        }
        self.put_json(PROFILES, &key, profile).await
    }

    pub async fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.all_json(PROFILES).await
    }
}
