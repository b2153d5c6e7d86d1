//! Uploads, with the API's authentication (session cookie or API token) and the operator role:
//! `POST /upload/image` takes a `docker save` archive (tar, or gzip'd tar) as the request body
//! and loads it, streamed, into the leader's own Docker engine, from where `sideloadImage` or a
//! deployment with `pull: SIDELOAD` sends it to nodes. The body may be up to `--upload-max-mib`
//! (these routes have their own limit and no request timeout: a large upload takes its time).

use axum::{
    Json,
    extract::{Request, State},
    response::{IntoResponse, Response},
};

use super::{
    HttpState,
    caller::{caller, caller_parts, error_response},
};
use crate::{access::Role, error::ApiError};

/// `POST /upload/image`: answers `{"loaded": ["name:tag", ...]}`.
pub async fn image(State(s): State<HttpState>, req: Request) -> Response {
    let parts = caller_parts(&req);
    let principal = match caller(&s.app, parts).await {
        Err(r) => return r,
        Ok((None, _)) => {
            return error_response(&ApiError::Unauthenticated(
                "log in or send an API token".into(),
            ));
        }
        Ok((Some(p), _)) if p.role < Role::Operator => {
            return error_response(&ApiError::Forbidden(format!(
                "this needs the operator role; you have {}",
                p.role.as_str()
            )));
        }
        Ok((Some(p), _)) => p,
    };
    let limit = s.app.config.upload_max;
    let body = req.into_body().into_data_stream();
    let result = s.app.images.load_upload(body, limit).await;
    let (outcome, detail) = match &result {
        Ok(loaded) => ("ok", Some(loaded.join(", "))),
        Err(e) => (e.code(), Some(e.public_message())),
    };
    s.app
        .audit
        .record(&principal.actor(), "uploadImage", None, outcome, detail)
        .await;
    match result {
        Ok(loaded) => Json(serde_json::json!({ "loaded": loaded })).into_response(),
        Err(e) => error_response(&e),
    }
}
