//! A note on an experiment, at a time.

use sea_orm::entity::prelude::*;

/// One row per note.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "experiment_note")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The experiment.
    pub experiment_id: String,
    /// When, ms since the Unix epoch.
    pub time_ms: i64,
    /// Who wrote it (an audit actor).
    pub author: String,
    /// The note.
    pub text: String,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
