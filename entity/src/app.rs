//! An app: a name under which bundles are uploaded as versions.

use sea_orm::entity::prelude::*;

/// One row of `app`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "app")]
pub struct Model {
    /// Its name (lowercase letters, digits, '-').
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// What it does (from the newest version's `app.yaml`).
    pub description: Option<String>,
    /// Its tags, a JSON array of strings.
    pub tags: String,
    /// Who uploaded its first version.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_ms: i64,
}

/// No relations (the foreign key cascades in the database).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
