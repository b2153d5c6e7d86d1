//! First-start setup, login and logout, users and API tokens. Every mutation is audited.

use async_graphql::{Context, Object, Result, SimpleObject};
use axum::http::header::SET_COOKIE;

use crate::{
    AppState,
    access::{Role, session_cookie},
    error::ApiError,
    graphql::{
        guard::{RequestInfo, RoleGuard, audited, principal},
        types::{ApiToken, User},
    },
};

/// A new API token. `token` is shown this once and never again.
#[derive(SimpleObject)]
pub struct CreatedApiToken {
    /// The secret to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// The stored token's details.
    pub api_token: ApiToken,
}

/// Auth mutations.
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Creates the first admin and logs them in. Only works while no user exists.
    async fn setup(&self, ctx: &Context<'_>, username: String, password: String) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        let user = audited(
            ctx,
            "setup",
            Some(&username),
            state.auth.setup(&username, &password),
        )
        .await?;
        let token = state.auth.start_session(&user).await?;
        ctx.insert_http_header(
            SET_COOKIE,
            session_cookie(Some(&token), state.config.cookie_secure),
        );
        Ok(User::try_from(user)?)
    }

    /// Logs in with a username and password; sets the session cookie.
    async fn login(&self, ctx: &Context<'_>, username: String, password: String) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        let addr = ctx.data_opt::<RequestInfo>().and_then(|r| r.addr);
        let work = state.auth.check_login(&username, &password, addr);
        let user = audited(ctx, "login", Some(&username), work).await?;
        let token = state.auth.start_session(&user).await?;
        ctx.insert_http_header(
            SET_COOKIE,
            session_cookie(Some(&token), state.config.cookie_secure),
        );
        Ok(User::try_from(user)?)
    }

    /// Ends the caller's browser session and clears the cookie.
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        if let Some(token) = ctx
            .data_opt::<RequestInfo>()
            .and_then(|r| r.session.clone())
        {
            audited(ctx, "logout", None, state.auth.end_session(&token)).await?;
        }
        ctx.insert_http_header(SET_COOKIE, session_cookie(None, state.config.cookie_secure));
        Ok(true)
    }

    /// Creates a user.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
        role: Role,
    ) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        let work = state.auth.create_user(&username, &password, role);
        Ok(User::try_from(
            audited(ctx, "createUser", Some(&username), work).await?,
        )?)
    }

    /// Changes a user's role. The last admin stays an admin.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_user_role(&self, ctx: &Context<'_>, id: String, role: Role) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        Ok(User::try_from(
            audited(
                ctx,
                "setUserRole",
                Some(&id),
                state.auth.set_role(&id, role),
            )
            .await?,
        )?)
    }

    /// Deletes a user, ending their sessions and revoking their tokens. The last admin stays.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn delete_user(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        audited(ctx, "deleteUser", Some(&id), state.auth.delete_user(&id)).await?;
        Ok(true)
    }

    /// Changes your own password; your sessions end, so log in again.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let who = principal(ctx)?;
        let work = async {
            if who.token.is_some() {
                return Err(ApiError::Forbidden(
                    "API tokens cannot change passwords".into(),
                ));
            }
            state
                .auth
                .change_password(who, &current_password, &new_password)
                .await
        };
        audited(ctx, "changePassword", Some(&who.username), work).await?;
        Ok(true)
    }

    /// Creates an API token with a role no higher than yours, optionally expiring.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        name: String,
        role: Role,
        expires_in_days: Option<i32>,
    ) -> Result<CreatedApiToken> {
        let state = ctx.data::<AppState>()?;
        let who = principal(ctx)?;
        let work = async {
            let expires_at =
                crate::access::expiry(expires_in_days, crate::access::MAX_API_TOKEN_DAYS)?;
            state.auth.create_token(who, &name, role, expires_at).await
        };
        let (model, token) = audited(ctx, "createApiToken", Some(&name), work).await?;
        Ok(CreatedApiToken {
            token,
            api_token: ApiToken(model),
        })
    }

    /// Revokes an API token (yours, or anyone's for an admin). Takes effect at once.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: String) -> Result<ApiToken> {
        let state = ctx.data::<AppState>()?;
        let who = principal(ctx)?;
        Ok(ApiToken(
            audited(
                ctx,
                "revokeApiToken",
                Some(&id),
                state.auth.revoke_token(who, &id),
            )
            .await?,
        ))
    }
}
