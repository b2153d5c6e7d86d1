//! The web app: static files, with client-side routes falling back to `index.html`.
//!
//! `scripts/build-web.sh` names every asset but `index.html` by its content (`-` and 16 hex digits
//! before the extension) and writes `.br` and `.gz` copies beside each file. So: the copy the
//! browser's `Accept-Encoding` prefers is sent as it is (no compressing per request on a small
//! leader); a hashed file never changes, so browsers keep it for a year without asking again;
//! `index.html` must be revalidated every time, so an upgrade is seen at once.

use std::path::Path;

use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Response},
};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

/// Cache lifetime of a content-hashed asset.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Serves the built web app. A path naming a file (its last segment has a `.`) is that file or
/// 404, never `index.html`: a tab asking for an asset of another version must not get (and keep
/// for a year) HTML under a `.wasm` name. Every other path is a client-side route: `index.html`.
pub(super) fn spa(dir: &Path) -> Router {
    let index = ServeFile::new(dir.join("index.html"))
        .precompressed_br()
        .precompressed_gzip();
    let files = ServeDir::new(dir).precompressed_br().precompressed_gzip();
    let serve = move |req: Request| {
        let (index, files) = (index.clone(), files.clone());
        async move {
            let names_a_file = req
                .uri()
                .path()
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains('.'));
            let served = if names_a_file {
                files.oneshot(req).await
            } else {
                index.oneshot(req).await
            };
            match served {
                Ok(response) => response.into_response(),
                Err(never) => match never {},
            }
        }
    };
    Router::new()
        .fallback(serve)
        .layer(axum::middleware::from_fn(cache_control))
}

/// Whether a file name carries its content hash: `<stem>-<16 hex digits>.<ext>`.
pub(super) fn is_content_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let Some((stem, _ext)) = name.rsplit_once('.') else {
        return false;
    };
    stem.rsplit_once('-').is_some_and(|(_, hash)| {
        hash.len() == 16
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Sets `Cache-Control` by the asked-for path, on successful answers only (a 404 for a hashed name
/// that does not exist must not be kept).
async fn cache_control(req: Request, next: Next) -> Response {
    let hashed = is_content_hashed(req.uri().path());
    let mut response = next.run(req).await;
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        let value = if hashed { IMMUTABLE } else { "no-cache" };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
        // The body depends on Accept-Encoding (a .br, .gz or plain copy): caches must know.
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

pub(super) async fn no_web_app() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(
            "<!doctype html><title>Trellis</title><h1>Trellis</h1><p>The web app is not built into this \
             leader. Start it with <code>scripts/run-leader.sh</code>, or pass <code>--web-dir</code> \
             pointing at a built <code>dist</code> folder. The API is at <a href=\"/graphiql\">/graphiql</a>.</p>",
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_recognised() {
        assert!(is_content_hashed(
            "/trellis_frontend_bg-0123456789abcdef.wasm"
        ));
        assert!(is_content_hashed("/style-fedcba9876543210.css"));
        for plain in [
            "/index.html",
            "/",
            "/nodes/pi-01",
            "/style.css",
            "/x-0123456789ABCDEF.js",
            "/x-0123456789abcde.js",
        ] {
            assert!(!is_content_hashed(plain), "{plain}");
        }
    }
}
