//! Building for wasm32 on either toolchain route, bundling the web client, and running wasm tests
//! in headless Chromium.

use crate::process::{self, run};
use crate::setup::{find_in_path, Toolchain, WasmRoute};
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// A cargo command for the wasm32 target. It has its own target directory, so the two toolchain
/// routes never invalidate the native build cache, and it denies warnings.
fn wasm_cargo(root: &Path, toolchain: &Toolchain, subcommand: &str) -> Command {
    let mut command = match toolchain.wasm_route {
        WasmRoute::Rustup => process::cargo(root),
        WasmRoute::DebianBuildStd => {
            let mut command = Command::new("/usr/bin/cargo");
            command
                .current_dir(root)
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTDOC", "/usr/bin/rustdoc")
                .env("RUSTC_BOOTSTRAP", "1");
            command
        }
    };
    command
        .arg(subcommand)
        .args(["--target", WASM_TARGET, "--locked"])
        .env("CARGO_TARGET_DIR", wasm_target_dir(root))
        .env("RUSTFLAGS", "--deny warnings");
    if toolchain.wasm_route == WasmRoute::DebianBuildStd {
        command.arg("-Zbuild-std=std,panic_abort");
    }
    command
}

fn wasm_target_dir(root: &Path) -> PathBuf {
    root.join("target-wasm")
}

/// Clippy on the wasm32 target, where client-wasm's browser modules are compiled (the native
/// run never sees them), warnings denied. Debian's toolchain route has no clippy for wasm32:
/// there the step is skipped, and says so.
pub(crate) fn clippy(root: &Path, toolchain: &Toolchain) -> Result<()> {
    if toolchain.wasm_route != WasmRoute::Rustup {
        eprintln!("xtask: no clippy for wasm32 on Debian's toolchain: the wasm32-only code was not linted");
        return Ok(());
    }
    run(wasm_cargo(root, toolchain, "clippy")
        .args([
            "--package",
            "peerchat-client-wasm",
            "--package",
            "peerchat-shared",
        ])
        .args(["--all-targets", "--", "--deny", "warnings"]))
}

/// Builds `client-wasm` with the size-optimised profile, runs wasm-bindgen into `web/pkg` (with
/// its TypeScript declarations, which the page's type check reads), and writes the bundle the
/// relay embeds, `web/dist` (see `bundle`).
pub(crate) fn build_web_bundle(root: &Path, toolchain: &Toolchain) -> Result<()> {
    run(wasm_cargo(root, toolchain, "build").args([
        "--package",
        "peerchat-client-wasm",
        "--profile",
        "wasm-release",
    ]))?;
    let wasm = wasm_target_dir(root)
        .join(WASM_TARGET)
        .join("wasm-release")
        .join("peerchat_client_wasm.wasm");
    run(Command::new(&toolchain.wasm_bindgen)
        .args(["--target", "web", "--remove-name-section"])
        .args(["--remove-producers-section", "--out-dir"])
        .arg(root.join("web").join("pkg"))
        .arg(&wasm))?;
    for file in crate::bundle::write(&root.join("web"))? {
        let compressed = file
            .brotli
            .map(|bytes| format!(", {bytes} with brotli"))
            .unwrap_or_default();
        eprintln!(
            "xtask: web/dist/{}: {} bytes{compressed}",
            file.path, file.bytes
        );
    }
    Ok(())
}

/// Type-checks the page's JavaScript (`// @ts-check` and JSDoc) against the declarations
/// wasm-bindgen wrote into `web/pkg`: `tsc --noEmit` for the page, then for its service worker,
/// whose globals differ. Needs the bundle built first.
pub(crate) fn check_page_types(root: &Path, toolchain: &Toolchain) -> Result<()> {
    let tsc = toolchain
        .tsc
        .as_ref()
        .context("TypeScript was not set up for this command")?;
    for project in ["tsconfig.json", "tsconfig.sw.json"] {
        run(Command::new("node")
            .arg(tsc)
            .args(["--noEmit", "--pretty", "false", "--project"])
            .arg(root.join("web").join(project)))?;
    }
    eprintln!("xtask: web/app.js and web/sw.js type-check");
    Ok(())
}

/// Runs a crate's tests compiled to wasm32 in headless Chromium through wasm-bindgen-test-runner.
pub(crate) fn test_in_browser(root: &Path, toolchain: &Toolchain, package: &str) -> Result<()> {
    let chromedriver = find_in_path("chromedriver").context("chromedriver is not on PATH")?;
    let capabilities = wasm_target_dir(root).join("webdriver.json");
    std::fs::create_dir_all(wasm_target_dir(root))?;
    // Flags for headless Chromium run by root on a machine without a network: no GPU, and no
    // calls home.
    std::fs::write(
        &capabilities,
        r#"{"goog:chromeOptions":{"args":["--disable-gpu","--disable-quic","--no-first-run","--disable-background-networking","--disable-component-update","--disable-sync"]}}"#,
    )?;
    // Chromium leaves temporary files behind when the runner ends it; keep them in one place.
    let scratch = wasm_target_dir(root).join("browser-tmp");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let outcome = run(wasm_cargo(root, toolchain, "test")
        // Doc-tests do not run on wasm32; without `--tests` cargo reports an empty doc-test run
        // last, which reads as "no tests ran".
        .args(["--package", package, "--tests"])
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            &toolchain.wasm_bindgen_test_runner,
        )
        .env("CHROMEDRIVER", chromedriver)
        .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", capabilities)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "120")
        .env("TMPDIR", &scratch));
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}
