//! One reading: a job's metric at a time.

use sea_orm::entity::prelude::*;

/// A reading as stored.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "reading")]
pub struct Model {
    /// Row id (arrival order).
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The node.
    pub node_id: String,
    /// The job that measured it.
    pub job: String,
    /// What was measured.
    pub metric: String,
    /// Its unit, when it has one.
    pub unit: Option<String>,
    /// When, milliseconds since the Unix epoch: the node's time corrected by its measured clock
    /// offset.
    pub time_ms: i64,
    /// When, by the node's own clock.
    pub node_time_ms: i64,
    /// The value.
    pub value: f64,
    /// The experiment it belongs to, if any.
    pub experiment_id: Option<String>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
