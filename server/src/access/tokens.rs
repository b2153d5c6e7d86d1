//! API tokens: created with a role no higher than their creator's, listed, revoked, resolved
//! on every request; and whether a long-lived connection's credential still holds.

use chrono::{DateTime, Utc};
use entity::{api_token, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder,
};

use super::{Auth, Credential, Principal, Role, new_token, role_of, token_hash, usable};
use crate::{
    error::{ApiError, ApiResult},
    infra::db::by_key,
};

impl Auth {
    /// The caller behind an API token, if it is valid (not revoked, not expired, creator exists).
    /// The token's role is capped by its creator's current role. Records the use.
    pub async fn from_api_token(&self, token: &str) -> ApiResult<Option<Principal>> {
        let principal = self.api_token_principal(token).await?;
        if let Some((id, _)) = principal.as_ref().and_then(|p| p.token.as_ref()) {
            api_token::Entity::update_many()
                .col_expr(
                    api_token::Column::LastUsedAt,
                    sea_orm::sea_query::Expr::value(Some(Utc::now())),
                )
                .filter(api_token::Column::Id.eq(id.clone()))
                .exec(&self.db)
                .await?;
        }
        Ok(principal)
    }

    /// Like [`Auth::from_api_token`], without recording the use.
    pub(crate) async fn api_token_principal(&self, token: &str) -> ApiResult<Option<Principal>> {
        // Every request with a token and every open socket every 2 s: `by_key`, not `one`.
        let Some(t) = by_key(
            api_token::Entity::find().filter(api_token::Column::TokenHash.eq(token_hash(token))),
            &self.db,
        )
        .await?
        else {
            return Ok(None);
        };
        if !usable(t.revoked_at, t.expires_at) {
            return Ok(None);
        }
        let Some(u) = by_key(user::Entity::find_by_id(t.user_id.clone()), &self.db).await? else {
            return Ok(None);
        };
        let role = Role::stored(&t.role)?.min(role_of(&u)?);
        Ok(Some(Principal {
            user_id: u.id,
            username: u.username,
            role,
            token: Some((t.id, t.name)),
        }))
    }

    /// Whether a credential still works with the same role it began with (a database error
    /// counts as "yes": an outage should not drop every subscriber, and new requests are checked
    /// anyway).
    pub async fn still_allows(&self, credential: &Credential, role: Role) -> bool {
        let current = match credential {
            Credential::Session(t) => self.from_session(t).await,
            Credential::ApiToken(t) => self.api_token_principal(t).await,
        };
        match current {
            Ok(Some(p)) => p.role == role,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Creates an API token for `owner`; returns it and the plaintext token (shown once).
    pub async fn create_token(
        &self,
        owner: &Principal,
        name: &str,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> ApiResult<(api_token::Model, String)> {
        let name = super::token_name("token", name)?;
        if role > owner.role {
            return Err(ApiError::Forbidden(format!(
                "a {} cannot create a token with role {}",
                owner.role.as_str(),
                role.as_str()
            )));
        }
        if owner.token.is_some() {
            return Err(ApiError::Forbidden(
                "API tokens cannot create API tokens; log in".into(),
            ));
        }
        let token = new_token("trellis_t_");
        let model = api_token::ActiveModel {
            id: Set(uuid::Uuid::new_v4().simple().to_string()),
            name: Set(name.to_owned()),
            user_id: Set(owner.user_id.clone()),
            role: Set(role.as_str().to_owned()),
            token_hash: Set(token_hash(&token)),
            prefix: Set(token.chars().take(14).collect()),
            created_at: Set(Utc::now()),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            last_used_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok((model, token))
    }

    /// Tokens `viewer` may see: their own, or every token for an admin.
    pub async fn list_tokens(&self, viewer: &Principal) -> ApiResult<Vec<api_token::Model>> {
        let mut q = api_token::Entity::find().order_by_desc(api_token::Column::CreatedAt);
        if viewer.role != Role::Admin {
            q = q.filter(api_token::Column::UserId.eq(viewer.user_id.clone()));
        }
        Ok(q.all(&self.db).await?)
    }

    /// Revokes a token: its owner or an admin may.
    pub async fn revoke_token(&self, by: &Principal, id: &str) -> ApiResult<api_token::Model> {
        let t = api_token::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .filter(|t| by.role == Role::Admin || t.user_id == by.user_id)
            .ok_or_else(|| ApiError::NotFound(format!("token {id:?}")))?;
        if t.revoked_at.is_some() {
            return Ok(t);
        }
        let mut m = t.into_active_model();
        m.revoked_at = Set(Some(Utc::now()));
        Ok(m.update(&self.db).await?)
    }
}
