//! The web bundle the relay embeds (`web/dist`): the page's files with content-hashed names
//! under `assets/` (served `immutable`), `index.html` and `sw.js` under fixed names (revalidated),
//! and beside each compressible file its brotli (`.br`) and gzip (`.gz`) forms.
//!
//! Names are hashed leaves first, because each file names the next: the wasm, then the
//! wasm-bindgen glue that loads it, then `app.js` that imports the glue, then `index.html`.
//! Every rewrite must match exactly once, so a renamed file fails the build instead of
//! shipping a page that loads nothing.

use anyhow::{bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::Path;

/// Where hashed files live in the bundle; the relay serves this folder `immutable`.
const ASSETS: &str = "assets";
/// Hex digits of SHA-256 in a hashed name: 64 bits, ample for one site's files.
const NAME_HASH_HEX: usize = 16;
/// Kept compressed forms must save at least this share of the file (else they are not worth a
/// `Vary` lookup).
const MIN_SAVING_PERCENT: usize = 5;

/// One file written to the bundle, with its sizes for the build's report.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) path: String,
    pub(crate) bytes: usize,
    pub(crate) brotli: Option<usize>,
}

/// Writes `web/dist` from the page's sources in `web/` and wasm-bindgen's output in `web/pkg`.
/// Files whose bytes did not change are left as they are (so cargo does not rebuild the relay
/// that embeds them), and files of earlier builds are removed.
pub(crate) fn write(web: &Path) -> Result<Vec<Written>> {
    let dist = web.join("dist");
    std::fs::create_dir_all(dist.join(ASSETS))?;
    let read = |path: &str| {
        std::fs::read(web.join(path)).with_context(|| format!("cannot read web/{path}"))
    };
    let read_text = |path: &str| -> Result<String> { Ok(String::from_utf8(read(path)?)?) };

    let wasm = hashed_name(
        "peerchat_client_wasm_bg",
        "wasm",
        &read("pkg/peerchat_client_wasm_bg.wasm")?,
    );
    let glue = replace_once(
        &read_text("pkg/peerchat_client_wasm.js")?,
        "'peerchat_client_wasm_bg.wasm'",
        &format!("'{}'", file_name(&wasm)),
    )?;
    let glue_name = hashed_name("peerchat_client_wasm", "js", glue.as_bytes());
    let app = replace_once(
        &read_text("app.js")?,
        "\"./pkg/peerchat_client_wasm.js\"",
        &format!("\"./{}\"", file_name(&glue_name)),
    )?;
    let app_name = hashed_name("app", "js", app.as_bytes());
    let style = read("style.css")?;
    let style_name = hashed_name("style", "css", &style);
    let index = replace_once(
        &replace_once(
            &read_text("index.html")?,
            "href=\"style.css\"",
            &format!("href=\"{style_name}\""),
        )?,
        "src=\"app.js\"",
        &format!("src=\"{app_name}\""),
    )?;
    let assets = [&app_name, &glue_name, &wasm, &style_name];
    let service_worker = format!(
        "// Written by `cargo xtask web`: the hashed files of this build, and its name.\n\
         const ASSETS = {};\nconst BUILD = \"{}\";\n\n{}",
        js_string_list(&assets),
        short_hash(index.as_bytes()),
        read_text("sw.js")?
    );

    let mut written = Vec::new();
    let mut kept = std::collections::BTreeSet::new();
    for (path, bytes) in [
        (wasm.as_str(), read("pkg/peerchat_client_wasm_bg.wasm")?),
        (glue_name.as_str(), glue.into_bytes()),
        (app_name.as_str(), app.into_bytes()),
        (style_name.as_str(), style),
        ("index.html", index.into_bytes()),
        ("sw.js", service_worker.into_bytes()),
    ] {
        let file = write_with_compressed_forms(&dist, path, &bytes)?;
        for suffix in ["", ".br", ".gz"] {
            kept.insert(dist.join(format!("{path}{suffix}")));
        }
        written.push(file);
    }
    for folder in [dist.clone(), dist.join(ASSETS)] {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_file() && !kept.contains(&path) {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(written)
}

/// `assets/<stem>.<hash>.<extension>`.
fn hashed_name(stem: &str, extension: &str, bytes: &[u8]) -> String {
    format!("{ASSETS}/{stem}.{}.{extension}", short_hash(bytes))
}

fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(NAME_HASH_HEX);
    for byte in &digest[..NAME_HASH_HEX / 2] {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A JavaScript array of the paths as strings (they hold no quote or backslash).
fn js_string_list(paths: &[&String]) -> String {
    let quoted: Vec<String> = paths.iter().map(|path| format!("\"{path}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        count => bail!("the web bundle expects {from} exactly once, found it {count} times"),
    }
}

/// Writes `path` and its compressed forms, unless the file is there with these bytes already
/// (its forms were made from them then).
fn write_with_compressed_forms(dist: &Path, path: &str, bytes: &[u8]) -> Result<Written> {
    let target = dist.join(path);
    let brotli_path = dist.join(format!("{path}.br"));
    let gzip_path = dist.join(format!("{path}.gz"));
    let unchanged = std::fs::read(&target).is_ok_and(|existing| existing == bytes);
    if !unchanged {
        let _ = std::fs::remove_file(&brotli_path);
        let _ = std::fs::remove_file(&gzip_path);
        std::fs::write(&target, bytes)
            .with_context(|| format!("cannot write {}", target.display()))?;
        let worth_keeping =
            |compressed: &[u8]| compressed.len() * 100 <= bytes.len() * (100 - MIN_SAVING_PERCENT);
        let brotli = brotli_bytes(bytes)?;
        if worth_keeping(&brotli) {
            std::fs::write(&brotli_path, &brotli)?;
        }
        let gzip = gzip_bytes(bytes)?;
        if worth_keeping(&gzip) {
            std::fs::write(&gzip_path, &gzip)?;
        }
    }
    Ok(Written {
        path: path.to_owned(),
        bytes: bytes.len(),
        brotli: std::fs::metadata(&brotli_path)
            .ok()
            .map(|file| file.len() as usize),
    })
}

fn brotli_bytes(bytes: &[u8]) -> Result<Vec<u8>> {
    let parameters = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 24,
        size_hint: bytes.len(),
        ..Default::default()
    };
    let mut compressed = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut compressed, &parameters)?;
    Ok(compressed)
}

fn gzip_bytes(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_that_does_not_match_exactly_once_fails() {
        assert_eq!(replace_once("a b", "a", "c").unwrap(), "c b");
        assert!(replace_once("a a", "a", "c").is_err());
        assert!(replace_once("b", "a", "c").is_err());
    }

    #[test]
    fn compressed_forms_decompress_to_the_file() {
        let text = "peerchat ".repeat(1_000).into_bytes();
        let mut unbrotli = Vec::new();
        brotli::BrotliDecompress(&mut &brotli_bytes(&text).unwrap()[..], &mut unbrotli).unwrap();
        assert_eq!(unbrotli, text);
        let mut ungzip = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&gzip_bytes(&text).unwrap()[..]),
            &mut ungzip,
        )
        .unwrap();
        assert_eq!(ungzip, text);
    }
}
