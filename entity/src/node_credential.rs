//! A node's MQTT password (its hash): issued when the node is approved, deleted when removed.

use sea_orm::entity::prelude::*;

/// One row per approved node.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "node_credential")]
pub struct Model {
    /// The node id, which is also its MQTT username.
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    /// SHA-256 of the password, hex (the password is 256 random bits).
    pub password_hash: String,
    /// The same password in Mosquitto's `$7$` format, for a Trellis-managed Mosquitto.
    pub mosquitto_hash: String,
    /// When it was issued.
    pub created_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
