//! A stored experiment profile.

use sea_orm::entity::prelude::*;

/// One profile, by name.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "profile")]
pub struct Model {
    /// Its `experiment_profile_name`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The YAML as written.
    pub source: String,
    /// Who stored it (an audit actor).
    pub updated_by: String,
    /// When, ms since the Unix epoch.
    pub updated_ms: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
