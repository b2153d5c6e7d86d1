//! GraphQL over HTTP: POST, and GET for queries (never mutations: GraphQL-over-HTTP says 405).

use async_graphql::parser::{parse_query, types::OperationType};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse, rejection::GraphQLRejection};
use axum::{
    extract::{FromRequest, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{
    HttpState,
    caller::{caller, caller_parts, error_response_with},
    ws::websocket,
};
use crate::{access::Principal, error::ApiError, graphql::guard::RequestInfo};

/// How long finding the caller and running the operation may take together: a second under
/// the request timeout, so a leader whose database stopped answering (a frozen Postgres holds
/// every query with no error) says so in a GraphQL error, `UNAVAILABLE`, before the timeout
/// layer's bare 408.
fn time_allowed(s: &HttpState) -> std::time::Duration {
    s.app
        .config
        .request_timeout
        .saturating_sub(std::time::Duration::from_secs(1))
        .max(std::time::Duration::from_secs(1))
}

/// When a request that starts now must be answered by ([`time_allowed`]).
fn deadline(s: &HttpState) -> tokio::time::Instant {
    tokio::time::Instant::now() + time_allowed(s)
}

/// The answer when the deadline passed: 503 `UNAVAILABLE`, naming the database when it does
/// not answer a ping either.
async fn too_slow(s: &HttpState) -> Response {
    let waited = time_allowed(s).as_secs();
    // Half a second, inside the second left before the timeout layer answers.
    let ping = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        s.app.nodes.db().ping(),
    )
    .await;
    let message = match ping {
        Ok(Ok(())) => format!("the leader could not answer within {waited} s: try again shortly"),
        _ => format!("the database did not answer within {waited} s: try again shortly"),
    };
    tracing::warn!(message, "a GraphQL request ran out of time");
    error_response_with(
        StatusCode::SERVICE_UNAVAILABLE,
        &ApiError::Unavailable(message),
    )
}

/// Finds the caller (sessions and tokens are in the database) before `deadline`.
async fn caller_by(
    s: &HttpState,
    parts: (axum::http::HeaderMap, Option<std::net::IpAddr>),
    deadline: tokio::time::Instant,
) -> Result<(Option<Principal>, RequestInfo), Response> {
    match tokio::time::timeout_at(deadline, caller(&s.app, parts)).await {
        Ok(c) => c,
        Err(_) => Err(too_slow(s).await),
    }
}

async fn execute(
    s: &HttpState,
    mut gql: async_graphql::Request,
    principal: Option<Principal>,
    info: RequestInfo,
    deadline: tokio::time::Instant,
) -> Response {
    if let Some(p) = principal {
        gql = gql.data(p);
    }
    match tokio::time::timeout_at(deadline, s.schema.execute(gql.data(info))).await {
        Ok(r) => GraphQLResponse::from(r).into_response(),
        Err(_) => too_slow(s).await,
    }
}

/// POST: one operation per request; a JSON array (batch) is refused with 400.
pub(super) async fn graphql_post(State(s): State<HttpState>, req: Request) -> Response {
    let deadline = deadline(&s);
    let (principal, info) = match caller_by(&s, caller_parts(&req), deadline).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    // The body is read outside the deadline: a client trickling it gets the timeout's 408.
    match GraphQLRequest::<GraphQLRejection>::from_request(req, &()).await {
        Ok(gql) => execute(&s, gql.into_inner(), principal, info, deadline).await,
        Err(rejection) => rejected(rejection),
    }
}

/// A request the GraphQL extractor could not read, answered in words as a GraphQL error:
/// 413 for a body over [`super::MAX_BODY`] (also a chunked one, which the body limit cuts off
/// as it streams), else 400 saying what was wrong (async-graphql-axum's own answer is the
/// error's `Debug` text).
fn rejected(rejection: GraphQLRejection) -> Response {
    use async_graphql::ParseRequestError;
    let too_large = format!(
        "the request body is over the limit of {} MiB",
        super::MAX_BODY >> 20
    );
    let (status, message) = match &rejection.0 {
        ParseRequestError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, too_large),
        ParseRequestError::Io(e) if e.to_string().contains("length limit exceeded") => {
            (StatusCode::PAYLOAD_TOO_LARGE, too_large)
        }
        other => (
            StatusCode::BAD_REQUEST,
            format!("the request could not be read: {other}"),
        ),
    };
    let body = serde_json::json!({
        "errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}],
    });
    (status, axum::Json(body)).into_response()
}

fn is_websocket_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// GET: a websocket upgrade starts a subscription session; otherwise the query string is a query.
/// GraphQL-over-HTTP: "GET requests MUST NOT be used for executing mutation operations", 405.
pub(super) async fn graphql_get(State(s): State<HttpState>, req: Request) -> Response {
    if is_websocket_upgrade(&req) {
        return websocket(s, req).await;
    }
    let deadline = deadline(&s);
    let (principal, info) = match caller_by(&s, caller_parts(&req), deadline).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let gql = match GraphQLRequest::<GraphQLRejection>::from_request(req, &()).await {
        Ok(r) => r.into_inner(),
        Err(rejection) => return rejected(rejection),
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
            let refused = ApiError::BadRequest("mutations must be sent with POST".into());
            let mut response = error_response_with(StatusCode::METHOD_NOT_ALLOWED, &refused);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
    }
    execute(&s, gql, principal, info, deadline).await
}
