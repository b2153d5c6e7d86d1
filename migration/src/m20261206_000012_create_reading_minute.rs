//! Per-minute rollups of readings: what a month-long chart reads instead of millions of rows.
//! The ingester adds to them in the same transaction as the readings; retention deletes whole
//! minutes with their readings; readings stored before this migration are rolled up here.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `reading_minute` and fills it from the readings already stored.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReadingMinute::Table)
                    .if_not_exists()
                    .col(string(ReadingMinute::NodeId))
                    .col(string(ReadingMinute::Job))
                    .col(string(ReadingMinute::Metric))
                    // The minute's start, ms since the Unix epoch (a multiple of 60 000).
                    .col(big_integer(ReadingMinute::MinuteMs))
                    // '' for readings outside any experiment, as in `reading_series`.
                    .col(string(ReadingMinute::ExperimentId))
                    .col(big_integer(ReadingMinute::Count))
                    .col(double(ReadingMinute::Sum))
                    .col(double(ReadingMinute::Min))
                    .col(double(ReadingMinute::Max))
                    // Time before experiment: a series' minutes over a range are one index range,
                    // with or without an experiment filter.
                    .primary_key(
                        Index::create()
                            .col(ReadingMinute::NodeId)
                            .col(ReadingMinute::Job)
                            .col(ReadingMinute::Metric)
                            .col(ReadingMinute::MinuteMs)
                            .col(ReadingMinute::ExperimentId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO reading_minute (node_id, job, metric, minute_ms, experiment_id, count, sum, min, max) \
                 SELECT node_id, job, metric, time_ms - (((time_ms % 60000) + 60000) % 60000), COALESCE(experiment_id, ''), \
                 COUNT(*), SUM(value), MIN(value), MAX(value) FROM reading \
                 GROUP BY node_id, job, metric, time_ms - (((time_ms % 60000) + 60000) % 60000), COALESCE(experiment_id, '')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReadingMinute::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ReadingMinute {
    Table,
    NodeId,
    Job,
    Metric,
    MinuteMs,
    ExperimentId,
    Count,
    Sum,
    Min,
    Max,
}
