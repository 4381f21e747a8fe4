//! The dependency graph's rules (ARCHITECTURE.md, "Crates"): which workspace crates each may
//! depend on, tests included (so no package cycle, even through dev-dependencies); the relay
//! without its default features (the library, its relay and browser tests) builds no WebRTC
//! stack; and one version of each big crate (two would be compiled, linked and shipped twice,
//! and their types would not mix).

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

/// Packages that only the relay's feature `virtual-clients` may bring in.
const VIRTUAL_CLIENT_ONLY: &[&str] = &["peerchat-virtual", "webrtc", "rtc"];

/// The workspace's crates.
const WORKSPACE: &[&str] = &[
    "peerchat-shared",
    "peerchat-server",
    "peerchat-client-wasm",
    "peerchat-virtual",
    "xtask",
];

/// Each workspace crate and the others it may depend on (directly or not, tests included).
const MAY_DEPEND_ON: &[(&str, &[&str])] = &[
    ("peerchat-shared", &[]),
    ("peerchat-server", &["peerchat-shared", "peerchat-virtual"]),
    ("peerchat-client-wasm", &["peerchat-shared"]),
    ("peerchat-virtual", &["peerchat-shared"]),
    ("xtask", &[]),
];

/// Every rule of this module, from `cargo tree` (no build).
pub(crate) fn check(root: &Path) -> Result<()> {
    check_single_versions(root)?;
    check_relay_without_webrtc(root)?;
    check_layers(root)
}

/// Fails when `cargo tree --duplicates` lists one of [`SINGLE_VERSION`].
fn check_single_versions(root: &Path) -> Result<()> {
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

/// Fails when the relay without default features (its library, and everything its tests are
/// built with) depends on one of [`VIRTUAL_CLIENT_ONLY`].
fn check_relay_without_webrtc(root: &Path) -> Result<()> {
    let tree = packages_of(root, "peerchat-server", &["--no-default-features"])?;
    let found = listed(&tree, VIRTUAL_CLIENT_ONLY);
    if !found.is_empty() {
        bail!(
            "peerchat-server without default features depends on {}: only the feature \
             `virtual-clients` (the binary's in-process virtual clients) may bring in WebRTC \
             (cargo tree -p peerchat-server --no-default-features -e normal,build,dev -i {})",
            found.join(", "),
            found[0]
        );
    }
    Ok(())
}

/// Fails when a workspace crate depends on one that [`MAY_DEPEND_ON`] does not allow it (for
/// the virtual client, the relay: a cycle, as the relay's binary depends on it).
fn check_layers(root: &Path) -> Result<()> {
    for (package, allowed) in MAY_DEPEND_ON {
        let tree = packages_of(root, package, &[])?;
        let forbidden: Vec<&str> = listed(&tree, WORKSPACE)
            .into_iter()
            .filter(|found| found != package && !allowed.contains(found))
            .collect();
        if !forbidden.is_empty() {
            bail!(
                "{package} depends on {} (it may depend on {allowed:?} only; tests that need the \
                 relay and virtual clients belong in server/tests/virtual_clients)",
                forbidden.join(", ")
            );
        }
    }
    Ok(())
}

/// The packages `package` is built with, its tests' included (`cargo tree --prefix none`).
fn packages_of(root: &Path, package: &str, options: &[&str]) -> Result<String> {
    process::output_of(
        process::cargo(root)
            .args(["tree", "--locked", "--package", package])
            .args(options)
            .args(["--edges", "normal,build,dev", "--prefix", "none"]),
    )
    .with_context(|| format!("cargo tree --package {package} failed"))
}

/// The names of `names` that lines of a `cargo tree --prefix none` start with.
fn listed(tree: &str, names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .copied()
        .filter(|name| {
            tree.lines()
                .any(|line| line.split_whitespace().next() == Some(*name))
        })
        .collect()
}

/// The crates of [`SINGLE_VERSION`] that `cargo tree --duplicates --prefix none` lists.
fn twice_built(tree: &str) -> Vec<&'static str> {
    listed(tree, SINGLE_VERSION)
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

    #[test]
    fn webrtc_in_a_tree_is_found_by_package_name_not_by_substring() {
        let tree = "peerchat-server v0.1.0 (/src/server)\nrtc-sctp v0.21.1\nwebrtc v0.21.1\n";
        assert_eq!(listed(tree, VIRTUAL_CLIENT_ONLY), ["webrtc"]);
        assert!(listed(
            "peerchat-server v0.1.0 (/src/server)\n",
            VIRTUAL_CLIENT_ONLY
        )
        .is_empty());
    }

    /// The rules hold in this workspace (`cargo tree` reads the manifests; nothing is built).
    #[test]
    fn the_relay_builds_no_webrtc_without_default_features_and_each_crate_keeps_to_its_layer() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        check_relay_without_webrtc(root).unwrap();
        check_layers(root).unwrap();
    }
}
