//! What jobs report besides their status: readings, job log lines, and how far the leader has
//! stored each agent run's numbered stream (so a batch delivered twice is stored once); the
//! node's pump calibrations; the job presets operators store; and the id of the start that made
//! each job.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `reading`, `job_log` and `telemetry_stream`; adds calibration and drop counts.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reading::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Reading::Id))
                    .col(string(Reading::NodeId))
                    .col(string(Reading::Job))
                    .col(string(Reading::Metric))
                    .col(string_null(Reading::Unit))
                    .col(big_integer(Reading::TimeMs))
                    .col(big_integer(Reading::NodeTimeMs))
                    .col(double(Reading::Value))
                    .to_owned(),
            )
            .await?;
        // The query every chart and export makes: one series over a time range.
        manager
            .create_index(
                Index::create()
                    .name("reading_series_time")
                    .table(Reading::Table)
                    .col(Reading::NodeId)
                    .col(Reading::Job)
                    .col(Reading::Metric)
                    .col(Reading::TimeMs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobLog::Table)
                    .if_not_exists()
                    .col(big_pk_auto(JobLog::Id))
                    .col(string(JobLog::NodeId))
                    .col(string(JobLog::Job))
                    .col(big_integer(JobLog::TimeMs))
                    .col(string(JobLog::Stream))
                    .col(text(JobLog::Line))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("job_log_job")
                    .table(JobLog::Table)
                    .col(JobLog::NodeId)
                    .col(JobLog::Job)
                    .col(JobLog::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TelemetryStream::Table)
                    .if_not_exists()
                    .col(string(TelemetryStream::NodeId))
                    .col(string(TelemetryStream::Run))
                    .col(string(TelemetryStream::Kind))
                    .col(big_integer(TelemetryStream::NextSeq))
                    .col(big_integer(TelemetryStream::Dropped))
                    .col(timestamp_with_time_zone(TelemetryStream::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(TelemetryStream::NodeId)
                            .col(TelemetryStream::Run)
                            .col(TelemetryStream::Kind),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobPreset::Table)
                    .if_not_exists()
                    .col(string(JobPreset::Name).primary_key())
                    .col(string(JobPreset::Kind))
                    .col(text(JobPreset::Description))
                    .col(json(JobPreset::Settings))
                    .col(string(JobPreset::UpdatedBy))
                    .col(timestamp_with_time_zone(JobPreset::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .add_column(json_null(Node::PumpCalibrations))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .add_column(big_integer(Job::LogsDropped).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .add_column(string_null(Job::StartId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Job::LogsDropped, Job::StartId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Job::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .drop_column(Node::PumpCalibrations)
                    .to_owned(),
            )
            .await?;
        for t in [
            JobPreset::Table.into_iden(),
            TelemetryStream::Table.into_iden(),
            JobLog::Table.into_iden(),
            Reading::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Reading {
    Table,
    Id,
    NodeId,
    Job,
    Metric,
    Unit,
    TimeMs,
    NodeTimeMs,
    Value,
}

#[derive(DeriveIden)]
enum JobLog {
    Table,
    Id,
    NodeId,
    Job,
    TimeMs,
    Stream,
    Line,
}

#[derive(DeriveIden)]
enum TelemetryStream {
    Table,
    NodeId,
    Run,
    Kind,
    NextSeq,
    Dropped,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobPreset {
    Table,
    Name,
    Kind,
    Description,
    Settings,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Node {
    Table,
    PumpCalibrations,
}

#[derive(DeriveIden)]
enum Job {
    Table,
    LogsDropped,
    StartId,
}
