//! The audit log: who did what, when, and how it ended.

use sea_orm::entity::prelude::*;

/// One row per mutation, login attempt or node command.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_event")]
pub struct Model {
    /// Increasing id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// When (leader's clock).
    pub at: DateTimeUtc,
    /// Who: `user:<name>`, `token:<name>`, or `anonymous`.
    pub actor: String,
    /// What: the operation (`renameNode`, `login`, ...).
    pub action: String,
    /// What it acted on (a node id, a username), if anything.
    pub target: Option<String>,
    /// `ok`, or the error code.
    pub outcome: String,
    /// More detail, for people.
    pub detail: Option<String>,
}

/// Audit events have no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
