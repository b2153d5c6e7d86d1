//! One log line of a job.

use sea_orm::entity::prelude::*;

/// A log line as stored (the newest lines of each job are kept).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "job_log")]
pub struct Model {
    /// Row id (arrival order).
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The node.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// When, milliseconds since the Unix epoch (the node's time, corrected).
    pub time_ms: i64,
    /// `stdout`, `stderr` or `agent`.
    pub stream: String,
    /// The text.
    pub line: String,
    /// The experiment it belongs to, if any.
    pub experiment_id: Option<String>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
