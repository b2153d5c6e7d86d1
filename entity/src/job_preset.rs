//! A job preset an operator stored (the built-in ones live in the server's code).

use sea_orm::entity::prelude::*;

/// One row per preset name.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "job_preset")]
pub struct Model {
    /// Its name, also the default job name (never a built-in preset's).
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The kind it starts.
    pub kind: String,
    /// One line for people.
    pub description: String,
    /// The settings it gives, as JSON (setting name → value).
    pub settings: Json,
    /// Who stored it last (an audit actor).
    pub updated_by: String,
    /// When.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
