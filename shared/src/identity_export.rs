//! The identity file a member saves to move their identity to another browser or device.
//!
//! It is JSON, `{"peerchat_identity":1,"seed":"<base64url of the 32-byte secret seed>",
//! "display_name":"…"}`, and it contains the secret key: whoever holds the file is that member.

use crate::encoding::{fixed_from_base64url, to_base64url};
use crate::identity::SecretKey;
use crate::membership::DisplayName;
use serde::{Deserialize, Serialize};

/// The format version written by this crate.
pub const IDENTITY_FILE_VERSION: u32 = 1;
/// Identity files are tiny; anything larger is not one.
pub const MAX_IDENTITY_FILE_BYTES: usize = 4 * 1024;

/// Why a file is not a usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityFileError {
    #[error("this is not a peerchat identity file")]
    NotAnIdentityFile,
    #[error("identity file version {0} is not supported; this client reads version {IDENTITY_FILE_VERSION}")]
    UnsupportedVersion(u32),
    #[error("the identity file's key is damaged")]
    BadSeed,
    #[error("the identity file's display name is not valid")]
    BadDisplayName,
}

#[derive(Serialize, Deserialize)]
struct IdentityFile {
    peerchat_identity: u32,
    seed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
}

/// A member's identity: the key and, once chosen, a display name.
#[derive(Debug, Clone)]
pub struct Identity {
    pub key: SecretKey,
    pub display_name: Option<DisplayName>,
}

impl Identity {
    /// The file contents for an export.
    #[allow(
        clippy::expect_used,
        reason = "an identity file holds strings only, which always serialise"
    )]
    pub fn to_file(&self) -> String {
        let file = IdentityFile {
            peerchat_identity: IDENTITY_FILE_VERSION,
            seed: to_base64url(&self.key.seed_bytes()),
            display_name: self
                .display_name
                .as_ref()
                .map(|name| name.as_str().to_owned()),
        };
        serde_json::to_string_pretty(&file).expect("identity files serialise")
    }

    /// Reads an exported identity file.
    pub fn from_file(text: &str) -> Result<Self, IdentityFileError> {
        if text.len() > MAX_IDENTITY_FILE_BYTES {
            return Err(IdentityFileError::NotAnIdentityFile);
        }
        let file: IdentityFile =
            serde_json::from_str(text).map_err(|_| IdentityFileError::NotAnIdentityFile)?;
        if file.peerchat_identity != IDENTITY_FILE_VERSION {
            return Err(IdentityFileError::UnsupportedVersion(
                file.peerchat_identity,
            ));
        }
        let seed =
            fixed_from_base64url::<32>(&file.seed).map_err(|_| IdentityFileError::BadSeed)?;
        let display_name = file
            .display_name
            .map(DisplayName::new)
            .transpose()
            .map_err(|_| IdentityFileError::BadDisplayName)?;
        Ok(Self {
            key: SecretKey::from_seed(seed),
            display_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn identity_file_round_trips_key_and_name() {
        let identity = Identity {
            key: SecretKey::from_seed([9; 32]),
            display_name: Some(DisplayName::new("Ada").unwrap()),
        };
        let restored = Identity::from_file(&identity.to_file()).unwrap();
        assert_eq!(restored.key.public_key(), identity.key.public_key());
        assert_eq!(restored.display_name, identity.display_name);
        let nameless = Identity {
            key: SecretKey::from_seed([9; 32]),
            display_name: None,
        };
        assert_eq!(
            Identity::from_file(&nameless.to_file())
                .unwrap()
                .display_name,
            None
        );
    }

    #[test]
    fn damaged_or_foreign_identity_files_are_refused_with_a_reason() {
        let check = |text: &str, expected: IdentityFileError| {
            assert_eq!(Identity::from_file(text).err(), Some(expected), "{text}");
        };
        check("not json", IdentityFileError::NotAnIdentityFile);
        check(r#"{"seed":"AAAA"}"#, IdentityFileError::NotAnIdentityFile);
        check(
            r#"{"peerchat_identity":2,"seed":"AAAA"}"#,
            IdentityFileError::UnsupportedVersion(2),
        );
        check(
            r#"{"peerchat_identity":1,"seed":"AAAA"}"#,
            IdentityFileError::BadSeed,
        );
        let seed = to_base64url(&[1; 32]);
        check(
            &format!(r#"{{"peerchat_identity":1,"seed":"{seed}","display_name":" "}}"#),
            IdentityFileError::BadDisplayName,
        );
        check(
            &"x".repeat(MAX_IDENTITY_FILE_BYTES + 1),
            IdentityFileError::NotAnIdentityFile,
        );
    }
}
