//! A container deployment: its name, which revision is newest, which should run and which last rolled out.

use sea_orm::entity::prelude::*;

/// One row of `deployment`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment")]
pub struct Model {
    /// Its id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Its name (unique, fixed).
    pub name: String,
    /// The newest revision.
    pub latest_revision: i32,
    /// The revision that should run (the newest, or the last good one after an automatic rollback).
    pub target_revision: i32,
    /// The last revision that rolled out completely.
    pub live_revision: Option<i32>,
    /// `running` or `stopped`.
    pub run_state: String,
    /// A restart of every instance was asked for at this time.
    pub restart_requested_ms: Option<i64>,
    /// Being removed: its containers go, then its rows.
    pub deleting: bool,
    /// Who made it (an audit actor).
    pub created_by: String,
    /// When, ms since the Unix epoch.
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
}

/// No relations (the foreign keys cascade in the database).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
