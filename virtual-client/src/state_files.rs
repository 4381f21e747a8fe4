//! What a virtual client keeps between runs besides its cache, beside its key file: the relay
//! key pinned at first contact (`<name>.relay`) and the membership certificate the relay issued
//! (`<name>.certificate`, JSON), so a restart logs in without its invite.

use peerchat_shared::identity::PublicKey;
use peerchat_shared::membership::MembershipCertificate;
use std::path::{Path, PathBuf};

/// The files of one virtual client, named after its key file.
#[derive(Debug, Clone)]
pub struct StateFiles {
    relay: PathBuf,
    certificate: PathBuf,
}

impl StateFiles {
    pub fn beside(key_file: &Path) -> Self {
        Self {
            relay: key_file.with_extension("relay"),
            certificate: key_file.with_extension("certificate"),
        }
    }

    pub fn pinned_relay(&self) -> Option<PublicKey> {
        let text = std::fs::read_to_string(&self.relay).ok()?;
        match text.trim().parse() {
            Ok(key) => Some(key),
            Err(_) => {
                tracing::warn!("{} holds no relay key; ignored", self.relay.display());
                None
            }
        }
    }

    pub fn pin_relay(&self, key: &PublicKey) {
        if let Err(error) = std::fs::write(&self.relay, format!("{key}\n")) {
            tracing::error!("cannot write {}: {error}", self.relay.display());
        }
    }

    pub fn certificate(&self) -> Option<MembershipCertificate> {
        let text = std::fs::read_to_string(&self.certificate).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save_certificate(&self, certificate: Option<&MembershipCertificate>) {
        let outcome = match certificate {
            Some(certificate) => std::fs::write(
                &self.certificate,
                serde_json::to_string(certificate).unwrap_or_default(),
            ),
            None => match std::fs::remove_file(&self.certificate) {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        };
        if let Err(error) = outcome {
            tracing::error!("cannot write {}: {error}", self.certificate.display());
        }
    }
}
