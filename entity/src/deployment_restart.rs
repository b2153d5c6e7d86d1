//! One exit of a deployment's container: when, its code, whether the OOM killer did it, and its last lines.

use sea_orm::entity::prelude::*;

/// One row of `deployment_restart`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_restart")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The deployment.
    pub deployment_id: String,
    /// The node.
    pub node_id: String,
    /// The revision of the container.
    pub revision: i32,
    /// The container.
    pub container_id: String,
    /// When it ended, ms since the Unix epoch.
    pub at_ms: i64,
    /// Its exit code.
    pub exit_code: Option<i64>,
    /// Killed for want of memory.
    pub oom_killed: bool,
    /// Its last log lines (at most 4 KiB).
    pub log_tail: String,
}

/// No relations (the foreign keys cascade in the database).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
