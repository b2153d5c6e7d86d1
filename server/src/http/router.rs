//! The router: routes, and the layers every request passes (body limit, CORS, timeout, panic
//! catcher, tracing).

use axum::{
    Router,
    http::{HeaderValue, Method, StatusCode, header},
    routing::{get, post},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::CompressionLayer,
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use super::{
    HttpState, MAX_BODY,
    graphiql::{graphiql_asset, graphiql_page},
    graphql::{graphql_get, graphql_post},
    health::readyz,
    spa::{no_web_app, spa},
};
use crate::{AppState, graphql::TrellisSchema};

/// The whole router.
pub fn router(app: AppState, schema: TrellisSchema) -> Router {
    let graphiql = app.config.graphiql;
    let web_dir = app.config.web_dir.clone();
    let mut r = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/export/readings.csv", get(super::export::readings))
        .route("/export/logs.csv", get(super::export::logs))
        .route("/export/events.csv", get(super::export::events));
    if graphiql {
        r = r
            .route("/graphiql", get(graphiql_page))
            .route("/graphiql/assets/{file}", get(graphiql_asset));
    } else {
        // Answer 404 here, not the web app's index.html, so it is plain that GraphiQL is off.
        let off = || async {
            (
                StatusCode::NOT_FOUND,
                "GraphiQL is turned off on this leader\n",
            )
        };
        r = r
            .route("/graphiql", get(off))
            .route("/graphiql/{*rest}", get(off));
    }
    let r = match web_dir {
        Some(dir) => r.fallback_service(spa(&dir)),
        None => r.fallback(no_web_app),
    };
    let timeout = app.config.request_timeout;
    // Everything above: small bodies, answered within the request timeout.
    let r = r
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    // Uploads: their own limit, and no request timeout (a large archive takes its time).
    let limit =
        |bytes: u64| RequestBodyLimitLayer::new(usize::try_from(bytes).unwrap_or(usize::MAX));
    let uploads = Router::new()
        .route("/upload/image", post(super::upload::image))
        .layer(limit(app.config.upload_max))
        .merge(
            Router::new()
                .route("/upload/bundle", post(super::upload::bundle))
                .layer(limit(app.config.bundle_max)),
        );
    let r = r.merge(uploads);
    // CORS: only the configured origins (never a wildcard); none by default, so only the web app
    // served by the leader itself can call the API from a browser.
    let origins: Vec<HeaderValue> = app
        .config
        .cors_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]);
    r.with_state(HttpState { app, schema })
        .layer(cors)
        .layer(CatchPanicLayer::new())
        // API answers (and GraphiQL's assets) compressed when the client accepts it; the web
        // app's files come precompressed and are left alone (they carry Content-Encoding).
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
}
