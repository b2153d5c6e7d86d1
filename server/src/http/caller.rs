//! Who is calling: a Bearer API token or the session cookie, and the error body when neither works.

use std::net::SocketAddr;

use axum::{
    Json,
    extract::{ConnectInfo, Request},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    AppState,
    access::{self, Principal},
    error::ApiError,
    graphql::guard::RequestInfo,
};

/// Who is calling: a Bearer API token, or the session cookie. A Bearer token that is not valid
/// is refused outright (401), so a script with a revoked token fails loudly; a stale cookie just
/// means "not logged in".
pub(super) async fn caller(
    app: &AppState,
    (headers, addr): (axum::http::HeaderMap, Option<std::net::IpAddr>),
) -> Result<(Option<Principal>, RequestInfo), Response> {
    let session = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(access::session_from_cookie_header)
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
pub(super) fn caller_parts(req: &Request) -> (axum::http::HeaderMap, Option<std::net::IpAddr>) {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    (req.headers().clone(), addr)
}

/// A GraphQL-shaped error body with the HTTP status that matches its code.
pub(super) fn error_response(e: &ApiError) -> Response {
    error_response_with(e.http_status(), e)
}

/// The same body with a status of the caller's choosing (405 for a mutation sent with GET).
pub(super) fn error_response_with(status: StatusCode, e: &ApiError) -> Response {
    e.log_if_internal("an HTTP request");
    let body = serde_json::json!({"errors": [{"message": e.public_message(), "extensions": {"code": e.code()}}]});
    (status, Json(body)).into_response()
}
