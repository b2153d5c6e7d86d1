//! A logged-in browser session. Only a hash of the session token is stored.

use sea_orm::entity::prelude::*;

/// One row per live session.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "session")]
pub struct Model {
    /// SHA-256 of the session token, hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    /// The user.
    pub user_id: String,
    /// When it was created.
    pub created_at: DateTimeUtc,
    /// When it stops working.
    pub expires_at: DateTimeUtc,
}

/// Sessions have no relations the ORM needs.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
