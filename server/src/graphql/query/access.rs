//! Who am I, first-start status, users and API tokens.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::{Principal, Role},
    graphql::{
        guard::{RoleGuard, principal},
        types::{ApiToken, SetupStatus, User},
    },
};

/// Auth queries.
#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// Whether the first admin still has to be created. Open to everyone.
    async fn setup_status(&self, ctx: &Context<'_>) -> Result<SetupStatus> {
        let state = ctx.data::<AppState>()?;
        Ok(SetupStatus {
            needs_setup: state.auth.needs_setup().await?,
        })
    }

    /// The caller, or null when not logged in. Open to everyone.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let state = ctx.data::<AppState>()?;
        let Some(p) = ctx.data_opt::<Principal>() else {
            return Ok(None);
        };
        let Some(u) = state.auth.user(&p.user_id).await? else {
            return Ok(None);
        };
        Ok(Some(User {
            role: p.role,
            ..User::try_from(u)?
        }))
    }

    /// Every user.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn users(&self, ctx: &Context<'_>) -> Result<Vec<User>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .auth
            .list_users()
            .await?
            .into_iter()
            .map(User::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// API tokens: your own, or everyone's for an admin. Tokens themselves are never shown again.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn api_tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiToken>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .auth
            .list_tokens(principal(ctx)?)
            .await?
            .into_iter()
            .map(ApiToken)
            .collect())
    }
}
