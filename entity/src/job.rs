//! A job on a node, as its agent last reported it (the leader's view: `lost` while its node is).

use sea_orm::entity::prelude::*;

/// One row per (node, job name).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "job")]
pub struct Model {
    /// The node it runs on.
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    /// Its name, unique on the node.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Its kind (`pwm`, `gpio`, ...).
    pub kind: String,
    /// The settings in force, as JSON (setting name → value).
    pub settings: Json,
    /// `init`, `ready`, `sleeping`, `stopped`, `failed`, or `lost` while its node is lost.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Its latest values (name → number, e.g. a `pid` job's `measured` and `output`).
    pub latest_values: Option<Json>,
    /// Who started it (an audit actor), when it was started through this leader.
    pub started_by: Option<String>,
    /// When the leader last heard of it.
    pub updated_at: DateTimeUtc,
    /// Log lines of this job the leader no longer keeps (it keeps the newest
    /// `telemetry::MAX_LOG_LINES_PER_JOB`).
    pub logs_dropped: i64,
    /// The id of the start that made the job, as its agent echoed it (a start waits for it).
    pub start_id: Option<String>,
    /// The experiment it belongs to, if any.
    pub experiment_id: Option<String>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
