//! Role checks for resolvers (async-graphql guards), the caller's identity in the request
//! context, and the helper that writes every mutation to the audit log.

use std::net::IpAddr;

use async_graphql::{Context, Guard, Result};

use crate::{
    AppState,
    access::{Principal, Role},
    error::{ApiError, ApiResult},
};

/// Allows callers whose role is at least the given one.
pub struct RoleGuard(pub Role);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let refused = match ctx.data_opt::<Principal>() {
            None => ApiError::Unauthenticated("log in or send an API token".into()),
            Some(p) if p.role >= self.0 => return Ok(()),
            Some(p) => ApiError::Forbidden(format!(
                "this needs the {} role; you have {}",
                self.0.as_str(),
                p.role.as_str()
            )),
        };
        // A user's mutation refused for want of a role is in the audit log too, under its field
        // name and with its `id` argument as the target. (Anonymous calls are not recorded: that
        // would let anyone fill the log.)
        if let Some(p) = ctx.data_opt::<Principal>()
            && ctx.query_env.operation.node.ty
                == async_graphql::parser::types::OperationType::Mutation
            && let Ok(state) = ctx.data::<AppState>()
        {
            let field = ctx.field();
            let target = field.arguments().ok().and_then(|args| {
                args.into_iter().find_map(|(name, value)| match value {
                    async_graphql::Value::String(s) if name.as_str() == "id" => Some(s),
                    _ => None,
                })
            });
            state
                .audit
                .record(
                    &p.actor(),
                    field.name(),
                    target.as_deref(),
                    refused.code(),
                    Some(refused.public_message()),
                )
                .await;
        }
        Err(refused.into())
    }
}

/// Facts about the HTTP request a resolver may need.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The client's address.
    pub addr: Option<IpAddr>,
    /// The session token from the cookie, if one was sent.
    pub session: Option<String>,
}

/// The caller, or `UNAUTHENTICATED`.
pub fn principal<'a>(ctx: &'a Context<'_>) -> ApiResult<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| ApiError::Unauthenticated("log in first".into()))
}

/// Runs a mutation and records it in the audit log with its outcome (`ok` or the error code).
pub async fn audited<T>(
    ctx: &Context<'_>,
    action: &str,
    target: Option<&str>,
    work: impl std::future::Future<Output = ApiResult<T>>,
) -> Result<T> {
    let state = ctx.data::<AppState>()?;
    let actor = ctx
        .data_opt::<Principal>()
        .map(Principal::actor)
        .unwrap_or_else(|| "anonymous".into());
    let result = work.await;
    let (outcome, detail) = match &result {
        Ok(_) => ("ok", None),
        Err(e) => (e.code(), Some(e.public_message())),
    };
    state
        .audit
        .record(&actor, action, target, outcome, detail)
        .await;
    result.map_err(Into::into)
}
