//! The web client's files: the bundle `cargo xtask web` writes to web/dist, built into the binary
//! (or read from `--web-dir`), served with the caching and compression a visit needs.
//!
//! - `assets/…` names carry their content's hash: `immutable`, cached for a year.
//! - Everything else (`index.html`, `sw.js`) is revalidated on every use: `no-cache`, a strong
//!   `ETag`, and `304 Not Modified` when `If-None-Match` names it.
//! - A file's precompressed forms (`<file>.br`, `<file>.gz`) are chosen by `Accept-Encoding`
//!   (brotli, then gzip, then the file as it is), with `Vary: Accept-Encoding`; each form has an
//!   ETag of its own.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use sha2::{Digest as _, Sha256};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

#[derive(RustEmbed)]
#[folder = "../web/dist"]
// A relay built before `cargo xtask web` still compiles, and says so instead of a page.
#[allow_missing = true]
struct BuiltIn;

/// Hashed files, which never change under their name.
const IMMUTABLE_PREFIX: &str = "assets/";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Where the files come from.
#[derive(Debug, Clone)]
pub(crate) enum WebFiles {
    BuiltIn,
    /// A bundle on disk (`--web-dir`), read on each request.
    Directory(PathBuf),
}

/// One stored form of a file.
struct Stored {
    bytes: Cow<'static, [u8]>,
    sha256: [u8; 32],
}

impl WebFiles {
    fn read(&self, path: &str) -> Option<Stored> {
        match self {
            Self::BuiltIn => BuiltIn::get(path).map(|file| Stored {
                sha256: file.metadata.sha256_hash(),
                bytes: file.data,
            }),
            Self::Directory(dir) => {
                let bytes = std::fs::read(dir.join(safe_relative_path(path)?)).ok()?;
                Some(Stored {
                    sha256: Sha256::digest(&bytes).into(),
                    bytes: Cow::Owned(bytes),
                })
            }
        }
    }

    /// Serves `uri`'s file for a GET or HEAD request.
    pub(crate) fn respond(&self, method: &Method, uri: &Uri, request: &HeaderMap) -> Response {
        if method != Method::GET && method != Method::HEAD {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "GET, HEAD")],
                "only GET and HEAD are served here\n",
            )
                .into_response();
        }
        let path = match uri.path().trim_start_matches('/') {
            "" => "index.html",
            path => path,
        };
        let Some(content_type) = content_type(path) else {
            return not_found();
        };
        let Some(identity) = self.read(path) else {
            if path == "index.html" && matches!(self, Self::BuiltIn) {
                let message = "this relay was built without its web client: run `cargo xtask web` before building it\n";
                return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
            }
            return not_found();
        };
        let (encoding, stored) = Encoding::preferred_first(request)
            .into_iter()
            .find_map(|encoding| match encoding {
                Encoding::Identity => None,
                _ => Some((
                    encoding,
                    self.read(&format!("{path}{}", encoding.suffix()))?,
                )),
            })
            .unwrap_or((Encoding::Identity, identity));
        let etag = entity_tag(&stored.sha256, encoding);
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, etag.clone());
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        let cache = if path.starts_with(IMMUTABLE_PREFIX) {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        if none_match(request, &etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(name) = encoding.content_coding() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(name));
        }
        (headers, Body::from(stored.bytes)).into_response()
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// The files a bundle holds, by extension; anything else is not served.
fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        _ => return None,
    })
}

/// `path` as a relative path of plain names (no `..`, root or drive), or `None`.
fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let relative = Path::new(path);
    relative
        .components()
        .all(|part| matches!(part, std::path::Component::Normal(_)))
        .then(|| relative.to_path_buf())
        .filter(|_| !path.is_empty() && !path.contains('\\'))
}

/// A content coding the bundle holds a file in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    /// The codings this request accepts, best first (brotli is smaller than gzip for the same
    /// file; quality values only rule a coding out, as every client lists them equal).
    fn preferred_first(request: &HeaderMap) -> Vec<Self> {
        let accepted: Vec<(String, bool)> = request
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|item| {
                let mut parts = item.split(';');
                let coding = parts.next()?.trim().to_ascii_lowercase();
                let refused = parts.any(|parameter| {
                    let parameter = parameter.trim().to_ascii_lowercase();
                    parameter
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                (!coding.is_empty()).then_some((coding, !refused))
            })
            .collect();
        let allows = |name: &str| {
            accepted
                .iter()
                .find(|(coding, _)| coding == name)
                .or_else(|| accepted.iter().find(|(coding, _)| coding == "*"))
                .is_some_and(|(_, allowed)| *allowed)
        };
        [Self::Brotli, Self::Gzip]
            .into_iter()
            .filter(|encoding| allows(encoding.content_coding().unwrap_or_default()))
            .chain([Self::Identity])
            .collect()
    }

    fn content_coding(self) -> Option<&'static str> {
        match self {
            Self::Brotli => Some("br"),
            Self::Gzip => Some("gzip"),
            Self::Identity => None,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::Brotli => ".br",
            Self::Gzip => ".gz",
            Self::Identity => "",
        }
    }
}

/// A strong ETag for one form of a file: its SHA-256 (first 16 bytes), and the coding.
#[allow(
    clippy::expect_used,
    reason = "hex digits, a dash and a coding name are valid header characters"
)]
fn entity_tag(sha256: &[u8; 32], encoding: Encoding) -> HeaderValue {
    let mut tag = String::from("\"");
    for byte in &sha256[..16] {
        tag.push_str(&format!("{byte:02x}"));
    }
    if let Some(coding) = encoding.content_coding() {
        tag.push('-');
        tag.push_str(coding);
    }
    tag.push('"');
    HeaderValue::from_str(&tag).expect("hex digits and a coding name are a valid header")
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 §13.1.2 asks) or is `*`.
fn none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let wanted = etag.as_bytes();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(|tag| tag.trim_ascii())
        .any(|tag| tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepting(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn brotli_is_preferred_then_gzip_and_refused_codings_are_skipped() {
        use Encoding::*;
        assert_eq!(
            Encoding::preferred_first(&accepting("gzip, deflate, br, zstd")),
            [Brotli, Gzip, Identity]
        );
        assert_eq!(
            Encoding::preferred_first(&accepting("gzip")),
            [Gzip, Identity]
        );
        assert_eq!(
            Encoding::preferred_first(&accepting("br;q=0, gzip;q=0.5")),
            [Gzip, Identity]
        );
        assert_eq!(
            Encoding::preferred_first(&accepting("*;q=0.1, gzip;q=0")),
            [Brotli, Identity]
        );
        assert_eq!(Encoding::preferred_first(&HeaderMap::new()), [Identity]);
    }

    #[test]
    fn paths_that_leave_the_folder_are_refused() {
        assert!(safe_relative_path("assets/app.js").is_some());
        for path in [
            "../Cargo.toml",
            "assets/../../x",
            "/etc/passwd",
            "a\\..\\b",
            "",
        ] {
            assert!(safe_relative_path(path).is_none(), "{path}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = HeaderValue::from_static("\"abc-br\"");
        let matching = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            none_match(&headers, &etag)
        };
        assert!(matching("\"abc-br\""));
        assert!(matching("W/\"abc-br\""));
        assert!(matching("\"x\", \"abc-br\""));
        assert!(matching("*"));
        assert!(!matching("\"abc\""));
        assert!(!matching("\"abc-gzip\""));
    }
}
