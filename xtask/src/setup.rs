//! Making a machine ready: the wasm32 toolchain, wasm-bindgen-cli at the locked version, Chromium
//! and ChromeDriver, and TypeScript (from npm) for the page's type check. Every step checks first
//! and skips what is already there.
//!
//! The wasm32 standard library comes from rustup when it can be added; where rustup cannot reach
//! its download server, Debian's `rustc-web` toolchain builds the standard library from source
//! (`-Zbuild-std`).

use crate::process::{self, output_of, succeeds_within};
use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What the command about to run needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Building the WASM client: the wasm32 toolchain and wasm-bindgen-cli.
    WebBuild,
    /// All of the above plus Chromium and ChromeDriver for browser tests, and TypeScript.
    Everything,
}

/// How to compile for `wasm32-unknown-unknown` on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WasmRoute {
    /// rustup's toolchain has the wasm32 standard library.
    Rustup,
    /// Debian's rustc-web and cargo-web build the standard library from rust-web-src.
    DebianBuildStd,
}

/// The tools found or installed by [`ensure`].
#[derive(Debug, Clone)]
pub(crate) struct Toolchain {
    pub(crate) wasm_route: WasmRoute,
    pub(crate) wasm_bindgen: PathBuf,
    pub(crate) wasm_bindgen_test_runner: PathBuf,
    /// TypeScript's `tsc` script (run with node), when the command needs it.
    pub(crate) tsc: Option<PathBuf>,
}

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const DEBIAN_WASM_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "lld-22"];
const BROWSER_PACKAGES: &[&str] = &["chromium", "chromium-driver"];
/// `unshare` and `ip`, with which each browser test makes its own network namespace.
const NAMESPACE_PACKAGES: &[&str] = &["util-linux", "iproute2"];
/// Node.js and npm, which install and run TypeScript.
const NODE_PACKAGES: &[&str] = &["nodejs", "npm"];

pub(crate) fn ensure(needs: Needs) -> Result<Toolchain> {
    let mut apt = Apt::default();
    let wasm_route = ensure_wasm_target(&mut apt)?;
    let (wasm_bindgen, wasm_bindgen_test_runner) = ensure_wasm_bindgen_cli()?;
    let mut tsc = None;
    if needs == Needs::Everything {
        ensure_browser(&mut apt)?;
        tsc = Some(ensure_typescript(&mut apt)?);
    }
    Ok(Toolchain {
        wasm_route,
        wasm_bindgen,
        wasm_bindgen_test_runner,
        tsc,
    })
}

fn ensure_wasm_target(apt: &mut Apt) -> Result<WasmRoute> {
    if rustup_has_wasm_std() {
        eprintln!("xtask: wasm32 target: rustup's (already installed)");
        return Ok(WasmRoute::Rustup);
    }
    if Apt::all_installed(DEBIAN_WASM_PACKAGES) {
        eprintln!("xtask: wasm32 target: Debian's rustc-web with build-std (already installed)");
        return Ok(WasmRoute::DebianBuildStd);
    }
    let mut add_target = Command::new("rustup");
    add_target.args(["target", "add", WASM_TARGET]);
    if succeeds_within(&mut add_target, Duration::from_secs(90)) && rustup_has_wasm_std() {
        return Ok(WasmRoute::Rustup);
    }
    eprintln!("xtask: rustup cannot add {WASM_TARGET} here; using Debian's rustc-web route");
    apt.install(DEBIAN_WASM_PACKAGES)
        .context("no wasm32 toolchain: neither `rustup target add wasm32-unknown-unknown` nor Debian's rustc-web packages could be installed")?;
    Ok(WasmRoute::DebianBuildStd)
}

fn rustup_has_wasm_std() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Some(libdir) =
        output_of(Command::new(rustc).args(["--print", "target-libdir", "--target", WASM_TARGET]))
    else {
        return false;
    };
    std::fs::read_dir(libdir.trim())
        .map(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("libstd-"))
        })
        .unwrap_or(false)
}

/// Installs wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate in Cargo.lock,
/// unless that version is already installed. Returns the paths of `wasm-bindgen` and
/// `wasm-bindgen-test-runner`.
fn ensure_wasm_bindgen_cli() -> Result<(PathBuf, PathBuf)> {
    let version = locked_version(&crate::workspace_root().join("Cargo.lock"), "wasm-bindgen")?;
    let bin = cargo_home().join("bin");
    let wasm_bindgen = bin.join("wasm-bindgen");
    let installed = output_of(Command::new(&wasm_bindgen).arg("--version"));
    if installed.as_deref().map(str::trim) == Some(&format!("wasm-bindgen {version}")) {
        eprintln!("xtask: wasm-bindgen-cli {version}: already installed");
    } else {
        eprintln!("xtask: installing wasm-bindgen-cli {version} (takes several minutes once)");
        // No --locked: the registry mirror lacks some of the newest versions the CLI's lock names.
        process::run(Command::new("cargo").args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &version,
        ]))?;
    }
    Ok((wasm_bindgen, bin.join("wasm-bindgen-test-runner")))
}

/// The version Cargo.lock records for `package`.
fn locked_version(lock_file: &Path, package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(lock_file)
        .with_context(|| format!("cannot read {}", lock_file.display()))?;
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == name_line {
            if let Some(version) = lines
                .next()
                .and_then(|line| line.strip_prefix("version = \""))
            {
                return Ok(version.trim_end_matches('"').to_owned());
            }
        }
    }
    bail!(
        "{} does not lock a version of {package}",
        lock_file.display()
    )
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

fn ensure_browser(apt: &mut Apt) -> Result<()> {
    if find_in_path("unshare").is_some() && find_in_path("ip").is_some() {
        eprintln!("xtask: unshare and ip: already installed");
    } else {
        apt.install(NAMESPACE_PACKAGES)
            .context("browser tests run in a network namespace of their own (Debian: apt-get install util-linux iproute2)")?;
    }
    if find_in_path("chromium").is_some() && find_in_path("chromedriver").is_some() {
        eprintln!("xtask: Chromium and ChromeDriver: already installed");
        return Ok(());
    }
    apt.install(BROWSER_PACKAGES)
        .context("browser tests need Chromium and a matching ChromeDriver (Debian: apt-get install chromium chromium-driver)")
}

pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Installs TypeScript into `web/node_modules` (not in git) with `npm ci`, at the version
/// `web/package.json` pins and `web/package-lock.json` locks, unless that version is there.
/// Returns the path of its `tsc` script, which runs with `node`.
fn ensure_typescript(apt: &mut Apt) -> Result<PathBuf> {
    let web = crate::workspace_root().join("web");
    let version = pinned_npm_version(&web.join("package.json"), "typescript")?;
    let tsc = web.join("node_modules/typescript/bin/tsc");
    let installed = output_of(Command::new("node").arg(&tsc).arg("--version"));
    if installed.as_deref().map(str::trim) == Some(&format!("Version {version}")) {
        eprintln!("xtask: TypeScript {version}: already installed");
        return Ok(tsc);
    }
    if find_in_path("npm").is_none() || find_in_path("node").is_none() {
        apt.install(NODE_PACKAGES).context(
            "the page's type check needs Node.js and npm (Debian: apt-get install nodejs npm)",
        )?;
    }
    eprintln!("xtask: installing TypeScript {version} into web/node_modules");
    process::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&web),
    )?;
    Ok(tsc)
}

/// The exact version `package.json` gives `package` (a dependency line `"name": "1.2.3"`).
fn pinned_npm_version(package_json: &Path, package: &str) -> Result<String> {
    let manifest = std::fs::read_to_string(package_json)
        .with_context(|| format!("cannot read {}", package_json.display()))?;
    let key = format!("\"{package}\": \"");
    manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix(&key))
        .and_then(|rest| rest.split('"').next())
        .filter(|version| {
            !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "{} does not pin an exact version of {package}",
                package_json.display()
            )
        })
}

/// Installs `cargo-fuzz` unless `cargo fuzz` already runs.
pub(crate) fn has_cargo_fuzz() -> bool {
    output_of(Command::new("cargo").args(["fuzz", "--version"])).is_some()
}

pub(crate) fn ensure_cargo_fuzz() -> Result<()> {
    if has_cargo_fuzz() {
        return Ok(());
    }
    process::run(Command::new("cargo").args(["install", "cargo-fuzz"]))
}

/// Debian's package manager, refreshing its lists at most once per run.
#[derive(Debug, Default)]
struct Apt {
    lists_updated: bool,
}

impl Apt {
    fn all_installed(packages: &[&str]) -> bool {
        packages.iter().all(|package| {
            output_of(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", package]))
                .is_some_and(|status| status == "installed")
        })
    }

    fn install(&mut self, packages: &[&str]) -> Result<()> {
        if find_in_path("apt-get").is_none() {
            bail!(
                "apt-get is not available; install {} by hand",
                packages.join(" ")
            );
        }
        let as_root = output_of(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0");
        let apt_get = |arguments: &[&str]| {
            let mut command = if as_root {
                Command::new("apt-get")
            } else {
                Command::new("sudo")
            };
            if !as_root {
                command.arg("apt-get");
            }
            command
                .args(arguments)
                .env("DEBIAN_FRONTEND", "noninteractive");
            command
        };
        if !self.lists_updated {
            process::run(&mut apt_get(&["update", "-q"]))?;
            self.lists_updated = true;
        }
        process::run(apt_get(&["install", "-y", "-q"]).args(packages))
    }
}
