//! A profile running (or run) on an experiment.

use sea_orm::entity::prelude::*;

/// One run.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "profile_run")]
pub struct Model {
    /// Its id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The experiment it runs on.
    pub experiment_id: String,
    /// The profile's name.
    pub profile_name: String,
    /// The profile as it was when the run started.
    pub source: String,
    /// Profile hours per real hour (1: real time; 3600: an hour a second, for simulators).
    pub time_scale: f64,
    /// `running`, `paused`, `stopped` or `done`.
    pub state: String,
    /// When it started, ms since the Unix epoch.
    pub started_ms: i64,
    /// When it was paused, while it is.
    pub paused_at_ms: Option<i64>,
    /// Real time spent paused before now, ms.
    pub paused_total_ms: i64,
    /// When it stopped or finished.
    pub ended_ms: Option<i64>,
    /// Who started it (an audit actor).
    pub started_by: String,
    /// The experiment's nodes when it started (a JSON list of ids): `common` acts on these.
    pub nodes: Json,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
