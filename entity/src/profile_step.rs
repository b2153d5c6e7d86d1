//! One action instance of a profile run, recorded when it begins.

use sea_orm::entity::prelude::*;

/// One step.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "profile_step")]
pub struct Model {
    /// The run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    /// Which action instance: its place in the profile, with the node and the repeat occurrence.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// When it was due, profile ms from the start.
    pub due_ms: i64,
    /// The node.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// The action's type.
    pub action: String,
    /// `running`, `done`, `skipped` or `failed`.
    pub state: String,
    /// What happened, in words.
    pub outcome: String,
    /// When it ran, ms since the Unix epoch.
    pub at_ms: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
