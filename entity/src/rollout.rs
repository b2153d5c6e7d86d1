//! A rollout of one revision of a deployment, batch by batch.

use sea_orm::entity::prelude::*;

/// One row of `rollout`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rollout")]
pub struct Model {
    /// Its id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The deployment.
    pub deployment_id: String,
    /// `update`, `rollback` or `auto_rollback`.
    pub kind: String,
    /// The revision it leaves.
    pub from_revision: Option<i32>,
    /// The revision it brings.
    pub to_revision: i32,
    /// `running`, `paused`, `succeeded`, `failed`, `rolled_back` or `superseded`.
    pub state: String,
    /// The batches of node ids, as JSON.
    pub batches: String,
    /// The batch under way (0-based).
    pub current_batch: i32,
    /// When it opened; `None` until it does.
    pub batch_started_ms: Option<i64>,
    /// Why it failed or paused.
    pub reason: Option<String>,
    /// Who started it.
    pub started_by: String,
    /// When.
    pub started_ms: i64,
    /// When it ended.
    pub ended_ms: Option<i64>,
}

/// No relations (the foreign keys cascade in the database).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
