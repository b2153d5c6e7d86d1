//! Per-minute rollups of readings: per (node, job, metric, minute, experiment), how many
//! readings, their sum, lowest and highest value. Kept by the ingester in the same transaction
//! as the readings; downsampled queries over long ranges read these instead of the readings.

use sea_orm::entity::prelude::*;

/// One series' readings in one minute.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "reading_minute")]
pub struct Model {
    /// The node.
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    /// The job.
    #[sea_orm(primary_key, auto_increment = false)]
    pub job: String,
    /// The metric.
    #[sea_orm(primary_key, auto_increment = false)]
    pub metric: String,
    /// The minute's start, ms since the Unix epoch (a multiple of 60 000).
    #[sea_orm(primary_key, auto_increment = false)]
    pub minute_ms: i64,
    /// The experiment, `""` for readings taken outside any.
    #[sea_orm(primary_key, auto_increment = false)]
    pub experiment_id: String,
    /// How many readings.
    pub count: i64,
    /// Their sum.
    pub sum: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
