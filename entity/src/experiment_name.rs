//! The names an experiment has had, each from when (its first from its creation).

use sea_orm::entity::prelude::*;

/// One name of an experiment.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "experiment_name")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The experiment.
    pub experiment_id: String,
    /// The name.
    pub name: String,
    /// From when it had it, ms since the Unix epoch (until its next name's time).
    pub from_ms: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
