//! The HTTP surface: `/graphql` (POST, GET, and the websocket upgrade for subscriptions with both
//! graphql-transport-ws and the older graphql-ws), GraphiQL with its assets served by the leader
//! itself (a leader often has no internet, and the stock page loads them from a CDN), `/healthz`,
//! `/readyz`, and the web app with client-side routes falling back to `index.html`.

use std::{path::Path, time::Duration};

use async_graphql::parser::{parse_query, types::OperationType};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse, GraphQLSubscription};
use axum::{
    Json, Router,
    extract::{FromRequest, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use tower::ServiceExt;
use tower_http::{
    catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer, services::ServeDir,
    set_header::SetResponseHeaderLayer, trace::TraceLayer,
};

use crate::{AppState, graphql::TrellisSchema};

/// Largest request body accepted, bytes. async-graphql-axum reads the body as a stream, so axum's
/// own default limit does not apply (axum-core `DefaultBodyLimit` docs): this layer enforces it.
pub const MAX_BODY: usize = 1024 * 1024;

/// State shared by the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    /// The application state.
    pub app: AppState,
    /// The executable GraphQL schema.
    pub schema: TrellisSchema,
}

/// The whole router.
pub fn router(app: AppState, schema: TrellisSchema) -> Router {
    let graphiql = app.config.graphiql;
    let web_dir = app.config.web_dir.clone();
    let mut r = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if graphiql {
        r = r
            .route("/graphiql", get(graphiql_page))
            .route("/graphiql/assets/{file}", get(graphiql_asset));
    }
    let r = match web_dir {
        Some(dir) => r.fallback_service(spa(&dir)),
        None => r.fallback(no_web_app),
    };
    r.with_state(HttpState { app, schema })
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
}

/// Serves the built web app; unknown paths get `index.html` so client-side routes work on reload.
fn spa(dir: &Path) -> Router {
    let index = dir.join("index.html");
    Router::new()
        .fallback_service(ServeDir::new(dir).fallback(tower_http::services::ServeFile::new(index)))
        // File names are not content-hashed: make browsers revalidate so an upgrade is seen at once.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
}

async fn no_web_app() -> Response {
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

async fn graphql_post(State(s): State<HttpState>, req: GraphQLRequest) -> GraphQLResponse {
    s.schema.execute(req.into_inner()).await.into()
}

fn is_websocket_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// GET: a websocket upgrade starts a subscription session; otherwise the query string is a query.
/// GraphQL-over-HTTP: "GET requests MUST NOT be used for executing mutation operations", 405.
async fn graphql_get(State(s): State<HttpState>, req: Request) -> Response {
    if is_websocket_upgrade(&req) {
        return match GraphQLSubscription::new(s.schema.clone())
            .oneshot(req)
            .await
        {
            Ok(resp) => resp.into_response(),
            Err(never) => match never {},
        };
    }
    let gql = match GraphQLRequest::<async_graphql_axum::rejection::GraphQLRejection>::from_request(
        req,
        &(),
    )
    .await
    {
        Ok(r) => r.into_inner(),
        Err(rejection) => return rejection.into_response(),
    };
    if let Ok(doc) = parse_query(&gql.query) {
        let is_mutation = doc.operations.iter().any(|(name, op)| {
            let selected = match (&gql.operation_name, name) {
                (Some(wanted), Some(n)) => wanted.as_str() == n.as_str(),
                _ => true,
            };
            selected && op.node.ty == OperationType::Mutation
        });
        if is_mutation {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "POST")],
                Json(serde_json::json!({"errors": [{"message": "mutations must be sent with POST", "extensions": {"code": "METHOD_NOT_ALLOWED"}}]})),
            )
                .into_response();
        }
    }
    GraphQLResponse::from(s.schema.execute(gql).await).into_response()
}

/// Ready when the database answers and the bridge holds a broker connection.
async fn readyz(State(s): State<HttpState>) -> Response {
    let db_ok = tokio::time::timeout(Duration::from_secs(2), s.app.nodes.db().ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let broker_ok = s.app.bridge.is_connected();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if db_ok && broker_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({"database": word(db_ok), "broker": word(broker_ok)})),
    )
        .into_response()
}

/// GraphiQL, wired to this leader's own copies of React, GraphiQL and graphql-ws.
const GRAPHIQL_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Trellis GraphiQL</title>
<style>html, body, #graphiql { height: 100%; margin: 0; overflow: hidden; width: 100%; }</style>
<link rel="stylesheet" href="/graphiql/assets/graphiql.min.css">
<script src="/graphiql/assets/react.production.min.js"></script>
<script src="/graphiql/assets/react-dom.production.min.js"></script>
<script src="/graphiql/assets/graphiql.min.js"></script>
<script src="/graphiql/assets/graphql-ws.min.js"></script>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script>
  const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
  const fetcher = GraphiQL.createFetcher({
    url: location.origin + '/graphql',
    wsClient: graphqlWs.createClient({ url: wsUrl, lazy: true }),
  });
  ReactDOM.render(
    React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }),
    document.getElementById('graphiql'),
  );
</script>
</body>
</html>
"#;

async fn graphiql_page() -> Html<&'static str> {
    Html(GRAPHIQL_HTML)
}

/// The GraphiQL assets, compiled into the binary (vendored from the PyPI wheel
/// `graphene-django-graphiql-static` 0.8: GraphiQL 2.1, React 17, graphql-ws; MIT licensed).
async fn graphiql_asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, mime): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.css" => (
            include_bytes!("../assets/graphiql/graphiql.min.css"),
            "text/css",
        ),
        "graphiql.min.js" => (
            include_bytes!("../assets/graphiql/graphiql.min.js"),
            "text/javascript",
        ),
        "react.production.min.js" => (
            include_bytes!("../assets/graphiql/react.production.min.js"),
            "text/javascript",
        ),
        "react-dom.production.min.js" => (
            include_bytes!("../assets/graphiql/react-dom.production.min.js"),
            "text/javascript",
        ),
        "graphql-ws.min.js" => (
            include_bytes!("../assets/graphiql/graphql-ws.min.js"),
            "text/javascript",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}
