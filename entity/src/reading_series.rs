//! The catalog of stored series: one row per (node, job, metric, experiment), kept by the
//! ingester in the same transaction as the readings.

use sea_orm::entity::prelude::*;

/// One stored series.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "reading_series")]
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
    /// The experiment, `""` for readings taken outside any.
    #[sea_orm(primary_key, auto_increment = false)]
    pub experiment_id: String,
    /// The unit of its latest readings.
    pub unit: Option<String>,
    /// Its first reading's time, ms since the Unix epoch.
    pub first_ms: i64,
    /// Its last reading's time.
    pub last_ms: i64,
    /// How many readings it holds.
    pub count: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
