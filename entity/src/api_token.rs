//! An API token for scripts and integrations. Only a hash of the token is stored; the token itself
//! is shown once, when it is created.

use sea_orm::entity::prelude::*;

/// One row per token, revoked ones included (for the audit trail).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_token")]
pub struct Model {
    /// Random id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// A name saying what it is for.
    pub name: String,
    /// The user who created it.
    pub user_id: String,
    /// `admin`, `operator` or `viewer`: never more than its creator's role.
    pub role: String,
    /// SHA-256 of the token, hex.
    #[sea_orm(unique)]
    pub token_hash: String,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTimeUtc,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTimeUtc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTimeUtc>,
    /// When it was last used.
    pub last_used_at: Option<DateTimeUtc>,
}

/// Tokens have no relations the ORM needs.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
