//! A node waiting to be approved: what it said about itself, and which join token it used.

use sea_orm::entity::prelude::*;

/// One row per pending node.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "enrollment")]
pub struct Model {
    /// The node id it asks for.
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    /// Its announce (hostname, MAC, ...), as JSON.
    pub facts: Json,
    /// The join token it used.
    pub join_token_id: String,
    /// The agent's secret naming its response topic.
    pub nonce: String,
    /// When it (last) asked.
    pub requested_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
