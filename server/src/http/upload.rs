//! Uploads, with the API's authentication (session cookie or API token) and the operator role.
//! These routes have their own body limits and no request timeout: a large upload takes its time.
//!
//! - `POST /upload/image`: a `docker save` archive (tar, or gzip'd tar) as the request body,
//!   loaded, streamed, into the leader's own Docker engine, from where `sideloadImage` or a
//!   deployment with `pull: SIDELOAD` sends it to nodes. Up to `--upload-max-mib`.
//! - `POST /upload/bundle?name=<app>&version=<version>`: an app bundle (tar or tar.gz), checked
//!   whole and stored as a version of its app (`name` and `version` may come from its
//!   `app.yaml` instead). Up to `--bundle-max-mib`. Answers the version:
//!   `{"app", "version", "kind", "image", "buildState", "deployment"}`. With `&deploy=<node id>`
//!   (or `*` for every node) it is a fast deploy: built and run at once as the app's
//!   deployment, and its bundle is not kept (`deployment` names the deployment).

use axum::{
    Json,
    extract::{Query, Request, State},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{
    HttpState,
    caller::{caller, caller_parts, error_response},
};
use crate::{access::Role, error::ApiError};

/// The caller, who must be an operator; the refusal as a response otherwise.
async fn operator(
    s: &HttpState,
    parts: (axum::http::HeaderMap, Option<std::net::IpAddr>),
) -> Result<crate::access::Principal, Response> {
    match caller(&s.app, parts).await {
        Err(r) => Err(r),
        Ok((None, _)) => Err(error_response(&ApiError::Unauthenticated(
            "log in or send an API token".into(),
        ))),
        Ok((Some(p), _)) if p.role < Role::Operator => Err(error_response(&ApiError::Forbidden(
            format!("this needs the operator role; you have {}", p.role.as_str()),
        ))),
        Ok((Some(p), _)) => Ok(p),
    }
}

/// The query of `POST /upload/bundle`.
#[derive(Debug, Deserialize)]
pub struct BundleQuery {
    /// The app's name (else `app.yaml`'s).
    pub name: Option<String>,
    /// The version's name (else `app.yaml`'s).
    pub version: Option<String>,
    /// Fast deploy: build and run it at once on this node (`*`: every node), and keep no bundle.
    pub deploy: Option<String>,
}

/// `POST /upload/bundle`.
pub async fn bundle(
    State(s): State<HttpState>,
    Query(q): Query<BundleQuery>,
    req: Request,
) -> Response {
    let principal = match operator(&s, caller_parts(&req)).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let actor = principal.actor();
    let body = req.into_body().into_data_stream();
    let mut result = s.app.apps.upload(body, q.name, q.version, &actor).await;
    let mut deployment = None;
    if let (Ok(v), Some(on)) = (&result, q.deploy.as_deref()) {
        let target = match on {
            "*" => crate::deployments::spec::Target {
                all: true,
                ..Default::default()
            },
            node => crate::deployments::spec::Target {
                node_ids: vec![node.to_owned()],
                ..Default::default()
            },
        };
        match s.app.apps.fast_deploy(v.clone(), target, &actor).await {
            Ok(d) => {
                deployment = Some(d.name);
                // As it is now: built.
                if let Ok(Some(now)) = s.app.apps.version_by_id(&v.id).await {
                    result = Ok(now);
                }
            }
            Err(e) => result = Err(e),
        }
    }
    let (outcome, detail, target) = match &result {
        Ok(v) => ("ok", None, Some(format!("{}/{}", v.app, v.version))),
        Err(e) => (e.code(), Some(e.public_message()), None),
    };
    s.app
        .audit
        .record(&actor, "uploadBundle", target.as_deref(), outcome, detail)
        .await;
    match result {
        Ok(v) => Json(serde_json::json!({
            "app": v.app,
            "version": v.version,
            "kind": v.kind,
            "image": v.image,
            "buildState": v.build_state,
            "deployment": deployment,
        }))
        .into_response(),
        Err(e) => error_response(&e),
    }
}

/// `POST /upload/image`: answers `{"loaded": ["name:tag", ...]}`.
pub async fn image(State(s): State<HttpState>, req: Request) -> Response {
    let principal = match operator(&s, caller_parts(&req)).await {
        Err(r) => return r,
        Ok(p) => p,
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
