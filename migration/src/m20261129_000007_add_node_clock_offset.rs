//! Adds the node's clock offset from the leader, as measured from its heartbeats.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `node.clock_offset_ms`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .add_column(big_integer_null(Node::ClockOffsetMs))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .drop_column(Node::ClockOffsetMs)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Node {
    Table,
    ClockOffsetMs,
}
