//! The dependency graph's rule: one version of each big crate (two would be compiled, linked and
//! shipped twice, and their types would not mix).

use crate::process;
use anyhow::{bail, Context as _, Result};
use std::path::Path;

/// Crates of which the workspace may build only one version.
const SINGLE_VERSION: &[&str] = &[
    "axum",
    "ed25519-dalek",
    "futures-util",
    "hyper",
    "redb",
    "rustls",
    "serde",
    "serde_json",
    "tokio",
    "tokio-tungstenite",
    "tungstenite",
    "wasm-bindgen",
    "webrtc",
];

/// Fails when `cargo tree --duplicates` lists one of [`SINGLE_VERSION`].
pub(crate) fn check_single_versions(root: &Path) -> Result<()> {
    let tree = process::output_of(process::cargo(root).args([
        "tree",
        "--workspace",
        "--locked",
        "--duplicates",
        "--depth",
        "0",
        "--prefix",
        "none",
        "--edges",
        "normal",
    ]))
    .context("cargo tree --duplicates failed")?;
    let doubled = twice_built(&tree);
    if !doubled.is_empty() {
        bail!(
            "more than one version of {} is built (cargo tree --duplicates shows where from)",
            doubled.join(", ")
        );
    }
    Ok(())
}

/// The crates of [`SINGLE_VERSION`] that `cargo tree --duplicates --prefix none` lists.
fn twice_built(tree: &str) -> Vec<&'static str> {
    SINGLE_VERSION
        .iter()
        .copied()
        .filter(|name| {
            tree.lines()
                .any(|line| line.split_whitespace().next() == Some(*name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_version_of_a_big_crate_is_named_and_small_ones_pass() {
        let tree =
            "base64 v0.22.1\n\nbase64 v0.23.1\n\ntungstenite v0.28.0\n\ntungstenite v0.29.0\n";
        assert_eq!(twice_built(tree), ["tungstenite"]);
        assert!(twice_built("rand v0.9.5\n\nrand v0.10.4\n").is_empty());
    }
}
