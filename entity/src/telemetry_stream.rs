//! How far the leader has stored one agent run's numbered readings or log lines.

use sea_orm::entity::prelude::*;

/// One row per (node, agent run, `readings` or `logs`).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "telemetry_stream")]
pub struct Model {
    /// The node.
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    /// The agent run (16 hex digits, random per agent start).
    #[sea_orm(primary_key, auto_increment = false)]
    pub run: String,
    /// `readings` or `logs`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// The number of the next item expected: items below it are stored.
    pub next_seq: i64,
    /// Items the agent reported it dropped in this run (its outage buffer was full).
    pub dropped: i64,
    /// When the last batch arrived.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
