//! Ed25519 keys in files (the relay's signing key, each virtual client's member key): from an
//! environment value or a key file, created with a fresh key on first run.
//!
//! The one module of this crate that touches the file system, behind the feature `key-file` for
//! the native programs that keep keys (the relay and the virtual clients). As everywhere here,
//! randomness is an argument: the caller draws the seed of a new key.

use crate::encoding::{fixed_from_base64url, to_base64url, TextFormError};
use crate::identity::SecretKey;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a key could not be read, parsed or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("the signing key must be base64url of a 32-byte Ed25519 seed")]
    Malformed(#[source] TextFormError),
    #[error("in {}", path.display())]
    MalformedFile {
        path: PathBuf,
        #[source]
        source: Box<KeyFileError>,
    },
    #[error("cannot read the key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parses a key given as base64url of its 32-byte seed (e.g. from `PEERCHAT_SIGNING_KEY`).
pub fn from_text(text: &str) -> Result<SecretKey, KeyFileError> {
    let seed = fixed_from_base64url::<32>(text.trim()).map_err(KeyFileError::Malformed)?;
    Ok(SecretKey::from_seed(seed))
}

/// Loads an existing key file; a missing one is an error that names the path.
pub fn load(path: &Path) -> Result<SecretKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(path, &text)
}

/// Loads the key file, or creates it (mode 0600) with the key of `fresh_seed()` when it does not
/// exist. Returns the key and whether it was created.
pub fn load_or_create(
    path: &Path,
    fresh_seed: impl FnOnce() -> [u8; 32],
) -> Result<(SecretKey, bool), KeyFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((parse_file(path, &text)?, false)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::from_seed(fresh_seed());
            write_new(path, &to_base64url(&key.seed_bytes()))?;
            Ok((key, true))
        }
        Err(source) => Err(KeyFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_file(path: &Path, text: &str) -> Result<SecretKey, KeyFileError> {
    from_text(text).map_err(|error| KeyFileError::MalformedFile {
        path: path.to_path_buf(),
        source: Box::new(error),
    })
}

fn write_new(path: &Path, text: &str) -> Result<(), KeyFileError> {
    let create = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyFileError::Create { path, source }
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(create(dir))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(create(path))?;
    file.write_all(format!("{text}\n").as_bytes())
        .map_err(create(path))?;
    Ok(())
}

// The file system is native only (these run natively; wasm32 has no files).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_file_is_created_once_with_the_callers_seed_and_read_back() {
        let dir = std::env::temp_dir().join(format!("peerchat-key-file-{}", std::process::id()));
        let path = dir.join("nested/relay.key");
        let (created, was_created) = load_or_create(&path, || [7; 32]).unwrap();
        assert!(was_created);
        assert_eq!(created.seed_bytes(), [7; 32]);
        let (again, was_created) =
            load_or_create(&path, || unreachable!("the file exists")).unwrap();
        assert!(!was_created);
        assert_eq!(again.seed_bytes(), [7; 32]);
        assert_eq!(load(&path).unwrap().seed_bytes(), [7; 32]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only the owner reads a key");
        }
        std::fs::write(&path, "not a key\n").unwrap();
        let error = load(&path).unwrap_err();
        assert!(
            matches!(error, KeyFileError::MalformedFile { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("relay.key"), "names the file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_given_as_text_is_its_seed_in_base64url() {
        let key = from_text(&format!(" {} \n", to_base64url(&[3; 32]))).unwrap();
        assert_eq!(key.seed_bytes(), [3; 32]);
        assert!(matches!(from_text("AAAA"), Err(KeyFileError::Malformed(_))));
    }

    #[test]
    fn an_unreadable_key_file_names_its_path() {
        let error = load(Path::new("/nonexistent/peerchat.key")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read the key file /nonexistent/peerchat.key"
        );
    }
}
