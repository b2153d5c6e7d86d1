//! A node's membership of an experiment over a span of time.

use sea_orm::entity::prelude::*;

/// One row per span; the open one (`until_ms` `None`) is the node's current experiment.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "experiment_node")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The experiment.
    pub experiment_id: String,
    /// The node.
    pub node_id: String,
    /// From when, ms since the Unix epoch (inclusive).
    pub from_ms: i64,
    /// Until when (exclusive); `None` while the node is in the experiment.
    pub until_ms: Option<i64>,
    /// Who added the node (an audit actor).
    pub added_by: String,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
