//! A retention rule: readings of a metric (or of every metric) older than so many days are
//! deleted.

use sea_orm::entity::prelude::*;

/// One rule.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "retention_rule")]
pub struct Model {
    /// The metric, `""` for every metric without a rule of its own.
    #[sea_orm(primary_key, auto_increment = false)]
    pub metric: String,
    /// Days of readings kept.
    pub days: i32,
    /// Who set it (an audit actor).
    pub updated_by: String,
    /// When, ms since the Unix epoch.
    pub updated_ms: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
