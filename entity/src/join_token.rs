//! A join token: lets a new agent ask to join the cluster. Only its hash is stored.

use sea_orm::entity::prelude::*;

/// One row per join token, revoked ones included.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "join_token")]
pub struct Model {
    /// Random id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// What it is for.
    pub name: String,
    /// SHA-256 of the token, hex.
    #[sea_orm(unique)]
    pub token_hash: String,
    /// Who created it (audit actor).
    pub created_by: String,
    /// When.
    pub created_at: DateTimeUtc,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTimeUtc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTimeUtc>,
    /// Mosquitto `$7$` hash of the token, for a Mosquitto the leader manages.
    pub mosquitto_hash: Option<String>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
