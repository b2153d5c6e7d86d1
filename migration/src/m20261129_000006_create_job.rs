//! Jobs: one row per (node, job name) with the job's kind, settings and state as its agent last
//! reported them, and the kinds of job each node offers.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `job` and adds `node.job_kinds`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Job::Table)
                    .if_not_exists()
                    .col(string(Job::NodeId))
                    .col(string(Job::Name))
                    .col(string(Job::Kind))
                    .col(json(Job::Settings))
                    .col(string(Job::State))
                    .col(text_null(Job::Error))
                    .col(json_null(Job::LatestValues))
                    .col(string_null(Job::StartedBy))
                    .col(timestamp_with_time_zone(Job::UpdatedAt))
                    .primary_key(Index::create().col(Job::NodeId).col(Job::Name))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .add_column(json_null(Node::JobKinds))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .drop_column(Node::JobKinds)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Job::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Job {
    Table,
    NodeId,
    Name,
    Kind,
    Settings,
    State,
    Error,
    LatestValues,
    StartedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Node {
    Table,
    JobKinds,
}
