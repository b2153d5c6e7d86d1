//! The web app: static files, with client-side routes falling back to `index.html`.

use std::path::Path;

use axum::{
    Router,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use tower_http::{services::ServeDir, set_header::SetResponseHeaderLayer};

/// Serves the built web app; unknown paths get `index.html` so client-side routes work on reload.
pub(super) fn spa(dir: &Path) -> Router {
    let index = dir.join("index.html");
    Router::new()
        .fallback_service(ServeDir::new(dir).fallback(tower_http::services::ServeFile::new(index)))
        // File names are not content-hashed: make browsers revalidate so an upgrade is seen at once.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
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
