//! The id of this Trellis cluster (one row): the label that marks the containers it owns.

use sea_orm::entity::prelude::*;

/// One row of `cluster_identity`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cluster_identity")]
pub struct Model {
    /// The id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// When it was made, ms since the Unix epoch.
    pub created_ms: i64,
}

/// No relations (the foreign keys cascade in the database).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
