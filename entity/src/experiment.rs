//! An experiment: a named run of work across some nodes.

use sea_orm::entity::prelude::*;

/// One row per experiment.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "experiment")]
pub struct Model {
    /// Its id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Its name, unique.
    pub name: String,
    /// What it is about.
    pub description: String,
    /// Who created it (an audit actor).
    pub created_by: String,
    /// When, ms since the Unix epoch.
    pub created_ms: i64,
    /// When it ended; `None` while it runs.
    pub ended_ms: Option<i64>,
    /// Who ended it.
    pub ended_by: Option<String>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
