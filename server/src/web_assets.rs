//! The web client's files, embedded in the binary at build time so the relay is one file.
//! `cargo xtask web` must run first to put the WASM bundle in web/pkg.

use axum::body::Body;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../web"]
#[include = "*.html"]
#[include = "*.js"]
#[include = "*.css"]
#[include = "*.wasm"]
#[include = "*.svg"]
#[include = "*.png"]
struct WebAssets;

/// Serves an embedded file: `/` is `index.html`; unknown paths are 404.
pub(crate) async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match WebAssets::get(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_owned()),
                // File names are not content-hashed: always revalidate so an upgrade shows at once.
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            Body::from(file.data.into_owned()),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
