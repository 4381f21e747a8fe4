//! Ed25519 keys in files (the relay's signing key, each virtual client's member key): from an
//! environment value or a key file, created with a fresh key on first run.

use anyhow::{Context as _, Result};
use peerchat_shared::encoding::{fixed_from_base64url, to_base64url};
use peerchat_shared::identity::SecretKey;
use std::io::Write as _;
use std::path::Path;

/// Parses a key given as base64url of its 32-byte seed (e.g. from `PEERCHAT_SIGNING_KEY`).
pub fn from_text(text: &str) -> Result<SecretKey> {
    let seed = fixed_from_base64url::<32>(text.trim())
        .context("the signing key must be base64url of a 32-byte Ed25519 seed")?;
    Ok(SecretKey::from_seed(seed))
}

/// Loads an existing key file; a missing one is an error that names the path.
pub fn load(path: &Path) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    from_text(&text).with_context(|| format!("in {}", path.display()))
}

/// Loads the key file, or creates it (mode 0600) with a fresh key when it does not exist.
/// Returns the key and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(SecretKey, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((
            from_text(&text).with_context(|| format!("in {}", path.display()))?,
            false,
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::from_seed(rand::random());
            write_new(path, &to_base64url(&key.seed_bytes()))?;
            Ok((key, true))
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(format!("{text}\n").as_bytes())?;
    Ok(())
}
