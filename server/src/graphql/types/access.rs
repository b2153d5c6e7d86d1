//! GraphQL types of the access domain: users, first-start status and API tokens.

use async_graphql::{Object, SimpleObject};

use crate::access::Role;
use chrono::{DateTime, Utc};

/// A user.
#[derive(Debug, Clone, SimpleObject)]
pub struct User {
    /// Id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Role (for `me` through an API token: the token's role).
    pub role: Role,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

impl TryFrom<entity::user::Model> for User {
    type Error = crate::error::ApiError;

    /// Fails on a stored role that is none of the roles (see [`Role::stored`]).
    fn try_from(u: entity::user::Model) -> Result<Self, Self::Error> {
        Ok(User {
            role: Role::stored(&u.role)?,
            id: u.id,
            username: u.username,
            created_at: u.created_at,
        })
    }
}

/// First-start status.
#[derive(Debug, Clone, SimpleObject)]
pub struct SetupStatus {
    /// True until the first admin is created.
    pub needs_setup: bool,
}

/// An API token (never the secret itself).
pub struct ApiToken(pub entity::api_token::Model);

#[Object]
impl ApiToken {
    /// Id.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// What it is for.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Its role.
    async fn role(&self) -> async_graphql::Result<Role> {
        Ok(Role::stored(&self.0.role)?)
    }
    /// The first characters of the token, to tell it apart.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    /// The user who created it.
    async fn owner_id(&self) -> &str {
        &self.0.user_id
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it expires, if ever.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// When it was revoked.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// When it was last used.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    /// Whether it works now (not revoked, not expired).
    async fn active(&self) -> bool {
        crate::access::usable(self.0.revoked_at, self.0.expires_at)
    }
}
