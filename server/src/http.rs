//! The HTTP surface: `/graphql` (POST, GET, and the websocket upgrade for subscriptions with both
//! graphql-transport-ws and the older graphql-ws), GraphiQL with its assets served by the leader
//! itself (a leader often has no internet, and the stock page loads them from a CDN), `/healthz`,
//! `/readyz`, and the web app with client-side routes falling back to `index.html`.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_graphql::{
    http::ALL_WEBSOCKET_PROTOCOLS,
    parser::{parse_query, types::OperationType},
};
use async_graphql_axum::{
    GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket, rejection::GraphQLRejection,
};
use axum::{
    Json, Router,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State, WebSocketUpgrade},
    http::{HeaderValue, Method, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use futures::StreamExt;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    services::ServeDir,
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{
    AppState,
    auth::{self, Principal},
    error::ApiError,
    graphql::{TrellisSchema, guard::RequestInfo},
};

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
    let timeout = app.config.request_timeout;
    r.with_state(HttpState { app, schema })
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(cors)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
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

/// Who is calling: a Bearer API token, or the session cookie. A Bearer token that is not valid
/// is refused outright (401), so a script with a revoked token fails loudly; a stale cookie just
/// means "not logged in".
async fn caller(
    app: &AppState,
    (headers, addr): (axum::http::HeaderMap, Option<std::net::IpAddr>),
) -> Result<(Option<Principal>, RequestInfo), Response> {
    let session = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::session_from_cookie_header)
        .map(str::to_owned);
    let info = RequestInfo {
        addr,
        session: session.clone(),
    };
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let principal = match token {
            Some(t) => app
                .auth
                .from_api_token(t)
                .await
                .map_err(|e| error_response(&e))?,
            None => None,
        };
        return match principal {
            Some(p) => Ok((Some(p), info)),
            None => Err(error_response(&ApiError::Unauthenticated(
                "the Authorization header does not hold a valid API token (Bearer <token>)".into(),
            ))),
        };
    }
    let principal = match &session {
        Some(t) => app
            .auth
            .from_session(t)
            .await
            .map_err(|e| error_response(&e))?,
        None => None,
    };
    Ok((principal, info))
}

/// The headers and client address of a request, copied out: a `&Request` held across an await
/// would make the handler's future `!Send` (the body is not `Sync`).
fn caller_parts(req: &Request) -> (axum::http::HeaderMap, Option<std::net::IpAddr>) {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    (req.headers().clone(), addr)
}

/// A GraphQL-shaped error body with the HTTP status that matches its code.
fn error_response(e: &ApiError) -> Response {
    let status = match e {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::json!({"errors": [{"message": e.public_message(), "extensions": {"code": e.code()}}]});
    (status, Json(body)).into_response()
}

async fn execute(
    s: &HttpState,
    mut gql: async_graphql::Request,
    principal: Option<Principal>,
    info: RequestInfo,
) -> Response {
    if let Some(p) = principal {
        gql = gql.data(p);
    }
    GraphQLResponse::from(s.schema.execute(gql.data(info)).await).into_response()
}

/// POST: one operation per request; a JSON array (batch) is refused with 400.
async fn graphql_post(State(s): State<HttpState>, req: Request) -> Response {
    let (principal, info) = match caller(&s.app, caller_parts(&req)).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match GraphQLRequest::<GraphQLRejection>::from_request(req, &()).await {
        Ok(gql) => execute(&s, gql.into_inner(), principal, info).await,
        Err(rejection) => rejection.into_response(),
    }
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
        return websocket(s, req).await;
    }
    let (principal, info) = match caller(&s.app, caller_parts(&req)).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let gql = match GraphQLRequest::<GraphQLRejection>::from_request(req, &()).await {
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
    execute(&s, gql, principal, info).await
}

/// How often an open subscription socket checks that its token or session is still valid.
const REVALIDATE_EVERY: Duration = Duration::from_secs(2);

/// Largest websocket message accepted from a client (axum's default is 64 MiB).
const MAX_WS_MESSAGE: usize = 64 * 1024;

/// Whether a browser's `Origin` may use the session cookie on a websocket: the leader's own origin
/// or an allowed one. Browsers send cookies on cross-site websocket upgrades (no CORS applies), so
/// without this check any page could subscribe as the logged-in user.
fn origin_allowed(headers: &axum::http::HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // Not a browser: cookies there are the client's own business.
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let own = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        == Some(host);
    own || allowed.iter().any(|a| a == origin)
}

/// A subscription session. The client must send `connection_init` within the configured time,
/// carrying `{"token": "<API token>"}` (or `Authorization: "Bearer <token>"`), or rely on the
/// session cookie sent with the upgrade. A bad token or no credentials closes the socket before
/// anything is sent; a missing `connection_init` closes it when the time is up.
async fn websocket(s: HttpState, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let cookie_session = if origin_allowed(&parts.headers, &s.app.config.cors_origins) {
        parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::session_from_cookie_header)
            .map(str::to_owned)
    } else {
        None
    };
    let init_timeout = s.app.config.ws_init_timeout;
    let auth_service = s.app.auth.clone();
    let watcher_auth = s.app.auth.clone();
    let schema = s.schema.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let initialised = Arc::new(AtomicBool::new(false));
            let seen = initialised.clone();
            let credential: Arc<std::sync::Mutex<Option<(auth::Credential, auth::Role)>>> = Arc::default();
            let in_use = credential.clone();
            // async-graphql has no init timeout, and a session outlives the credentials it began
            // with: end the input stream ourselves (which ends the session and closes the socket)
            // when no init came in time, or when the token or session is revoked.
            let ends = async move {
                tokio::time::sleep(init_timeout).await;
                if !seen.load(Ordering::SeqCst) {
                    return;
                }
                loop {
                    tokio::time::sleep(REVALIDATE_EVERY).await;
                    let current = in_use.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some((c, role)) = current
                        && !watcher_auth.still_allows(&c, role).await
                    {
                        tracing::info!(
                            "closing a subscription socket: its credentials were revoked or its role changed"
                        );
                        return;
                    }
                }
            };
            let stream = stream.take_until(ends);
            GraphQLWebSocket::new_with_pair(sink, stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    initialised.store(true, Ordering::SeqCst);
                    let token = payload
                        .get("token")
                        .and_then(|v| v.as_str())
                        .or_else(|| {
                            payload
                                .get("Authorization")
                                .and_then(|v| v.as_str())
                                .and_then(|v| v.strip_prefix("Bearer "))
                        })
                        .map(str::to_owned);
                    let used = match token {
                        Some(t) => Some(auth::Credential::ApiToken(t)),
                        None => cookie_session.map(auth::Credential::Session),
                    };
                    let principal = match &used {
                        Some(auth::Credential::ApiToken(t)) => {
                            auth_service.from_api_token(t).await.ok().flatten()
                        }
                        Some(auth::Credential::Session(t)) => {
                            auth_service.from_session(t).await.ok().flatten()
                        }
                        None => None,
                    };
                    if let (Some(p), Some(c)) = (&principal, used) {
                        *credential.lock().unwrap_or_else(|p| p.into_inner()) = Some((c, p.role));
                    }
                    match principal {
                        Some(p) => {
                            let mut data = async_graphql::Data::default();
                            data.insert(p);
                            Ok(data)
                        }
                        None => Err(async_graphql::Error::new(
                            "unauthenticated: send a valid token in connection_init",
                        )),
                    }
                })
                .serve()
                .await;
        })
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
