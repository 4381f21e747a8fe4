//! Rebuilds the relay when the web client changes, so the embedded bundle is never stale
//! (`cargo xtask web` writes web/dist before the relay is built).

fn main() {
    println!("cargo:rerun-if-changed=../web/dist");
}
