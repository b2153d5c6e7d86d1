//! Retention rules: how many days of readings to keep, for every metric or for one.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `retention_rule`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RetentionRule::Table)
                    .if_not_exists()
                    // '' for the rule of every metric without one of its own.
                    .col(string(RetentionRule::Metric).primary_key())
                    .col(integer(RetentionRule::Days))
                    .col(string(RetentionRule::UpdatedBy))
                    .col(big_integer(RetentionRule::UpdatedMs))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RetentionRule::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RetentionRule {
    Table,
    Metric,
    Days,
    UpdatedBy,
    UpdatedMs,
}
