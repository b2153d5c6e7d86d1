//! Experiments: a named run of work across some nodes, with notes. A node belongs to at most one
//! running experiment at a time (a unique index over its open membership); the membership history
//! says which experiment a reading of a node at a given time belongs to. Readings, job log lines
//! and jobs carry their experiment; `reading_series` lists every series stored (per node, job,
//! metric and experiment) with its time span and row count, so charts and counts need no scan.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `experiment`, `experiment_node`, `experiment_note`, `reading_series`; adds the
/// experiment to readings, log lines and jobs.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Experiment::Table)
                    .if_not_exists()
                    .col(string(Experiment::Id).primary_key())
                    .col(string_uniq(Experiment::Name))
                    .col(text(Experiment::Description))
                    .col(string(Experiment::CreatedBy))
                    .col(big_integer(Experiment::CreatedMs))
                    .col(big_integer_null(Experiment::EndedMs))
                    .col(string_null(Experiment::EndedBy))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ExperimentNode::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ExperimentNode::Id))
                    .col(string(ExperimentNode::ExperimentId))
                    .col(string(ExperimentNode::NodeId))
                    .col(big_integer(ExperimentNode::FromMs))
                    .col(big_integer_null(ExperimentNode::UntilMs))
                    .col(string(ExperimentNode::AddedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ExperimentNode::Table, ExperimentNode::ExperimentId)
                            .to(Experiment::Table, Experiment::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // At most one open membership per node: the database itself refuses a second one, so two
        // racing "add node" calls cannot both win. (A partial index: SQLite and Postgres alike.)
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS experiment_node_open ON experiment_node (node_id) WHERE until_ms IS NULL",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("experiment_node_experiment")
                    .table(ExperimentNode::Table)
                    .col(ExperimentNode::ExperimentId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ExperimentNote::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ExperimentNote::Id))
                    .col(string(ExperimentNote::ExperimentId))
                    .col(big_integer(ExperimentNote::TimeMs))
                    .col(string(ExperimentNote::Author))
                    .col(text(ExperimentNote::Text))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ExperimentNote::Table, ExperimentNote::ExperimentId)
                            .to(Experiment::Table, Experiment::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("experiment_note_experiment")
                    .table(ExperimentNote::Table)
                    .col(ExperimentNote::ExperimentId)
                    .col(ExperimentNote::TimeMs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReadingSeries::Table)
                    .if_not_exists()
                    .col(string(ReadingSeries::NodeId))
                    .col(string(ReadingSeries::Job))
                    .col(string(ReadingSeries::Metric))
                    // '' for readings outside any experiment (a key column cannot be NULL).
                    .col(string(ReadingSeries::ExperimentId))
                    .col(string_null(ReadingSeries::Unit))
                    .col(big_integer(ReadingSeries::FirstMs))
                    .col(big_integer(ReadingSeries::LastMs))
                    .col(big_integer(ReadingSeries::Count))
                    .primary_key(
                        Index::create()
                            .col(ReadingSeries::NodeId)
                            .col(ReadingSeries::Job)
                            .col(ReadingSeries::Metric)
                            .col(ReadingSeries::ExperimentId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("reading_series_experiment")
                    .table(ReadingSeries::Table)
                    .col(ReadingSeries::ExperimentId)
                    .to_owned(),
            )
            .await?;
        for (table, column) in [
            (
                Reading::Table.into_iden(),
                Reading::ExperimentId.into_iden(),
            ),
            (JobLog::Table.into_iden(), JobLog::ExperimentId.into_iden()),
            (Job::Table.into_iden(), Job::ExperimentId.into_iden()),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(ColumnDef::new(column).string().null())
                        .to_owned(),
                )
                .await?;
        }
        // Readings stored before the catalog existed are in it too (retention and counts go by it).
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO reading_series (node_id, job, metric, experiment_id, unit, first_ms, last_ms, count) \
                 SELECT node_id, job, metric, '', MAX(unit), MIN(time_ms), MAX(time_ms), COUNT(*) \
                 FROM reading GROUP BY node_id, job, metric",
            )
            .await?;
        // An experiment's readings in time order (its export); only rows that have one.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS reading_experiment_time ON reading (experiment_id, time_ms) WHERE experiment_id IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS reading_experiment_time")
            .await?;
        for (table, column) in [
            (
                Reading::Table.into_iden(),
                Reading::ExperimentId.into_iden(),
            ),
            (JobLog::Table.into_iden(), JobLog::ExperimentId.into_iden()),
            (Job::Table.into_iden(), Job::ExperimentId.into_iden()),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        for t in [
            ReadingSeries::Table.into_iden(),
            ExperimentNote::Table.into_iden(),
            ExperimentNode::Table.into_iden(),
            Experiment::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Experiment {
    Table,
    Id,
    Name,
    Description,
    CreatedBy,
    CreatedMs,
    EndedMs,
    EndedBy,
}

#[derive(DeriveIden)]
enum ExperimentNode {
    Table,
    Id,
    ExperimentId,
    NodeId,
    FromMs,
    UntilMs,
    AddedBy,
}

#[derive(DeriveIden)]
enum ExperimentNote {
    Table,
    Id,
    ExperimentId,
    TimeMs,
    Author,
    Text,
}

#[derive(DeriveIden)]
enum ReadingSeries {
    Table,
    NodeId,
    Job,
    Metric,
    ExperimentId,
    Unit,
    FirstMs,
    LastMs,
    Count,
}

#[derive(DeriveIden)]
enum Reading {
    Table,
    ExperimentId,
}

#[derive(DeriveIden)]
enum JobLog {
    Table,
    ExperimentId,
}

#[derive(DeriveIden)]
enum Job {
    Table,
    ExperimentId,
}
