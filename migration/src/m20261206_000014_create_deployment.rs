//! Container deployments: the desired state (deployments and their revisions), what each node's
//! instance should run and was last seen running, restart records, rollouts, and the cluster's
//! id that marks the containers this database owns.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `cluster_identity`, `deployment`, `deployment_revision`, `deployment_instance`,
/// `deployment_restart` and `rollout`.
#[derive(DeriveMigrationName)]
pub struct Migration;

fn cascade(table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Deployment::Table, Deployment::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClusterIdentity::Table)
                    .if_not_exists()
                    .col(string(ClusterIdentity::Id).primary_key())
                    .col(big_integer(ClusterIdentity::CreatedMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Deployment::Table)
                    .if_not_exists()
                    .col(string(Deployment::Id).primary_key())
                    .col(string_uniq(Deployment::Name))
                    .col(integer(Deployment::LatestRevision))
                    .col(integer(Deployment::TargetRevision))
                    .col(integer_null(Deployment::LiveRevision))
                    .col(string(Deployment::RunState))
                    .col(big_integer_null(Deployment::RestartRequestedMs))
                    .col(boolean(Deployment::Deleting))
                    .col(string(Deployment::CreatedBy))
                    .col(big_integer(Deployment::CreatedMs))
                    .col(big_integer(Deployment::UpdatedMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeploymentRevision::Table)
                    .if_not_exists()
                    .col(
                        big_integer(DeploymentRevision::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string(DeploymentRevision::DeploymentId))
                    .col(integer(DeploymentRevision::Revision))
                    .col(text(DeploymentRevision::Spec))
                    .col(string(DeploymentRevision::CreatedBy))
                    .col(big_integer(DeploymentRevision::CreatedMs))
                    .col(string(DeploymentRevision::Cause))
                    .col(text(DeploymentRevision::Summary))
                    .col(string_null(DeploymentRevision::Outcome))
                    .col(text_null(DeploymentRevision::OutcomeReason))
                    .foreign_key(&mut cascade(
                        DeploymentRevision::Table,
                        DeploymentRevision::DeploymentId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployment_revision_unique")
                    .table(DeploymentRevision::Table)
                    .col(DeploymentRevision::DeploymentId)
                    .col(DeploymentRevision::Revision)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeploymentInstance::Table)
                    .if_not_exists()
                    .col(
                        big_integer(DeploymentInstance::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string(DeploymentInstance::DeploymentId))
                    .col(string(DeploymentInstance::NodeId))
                    .col(integer_null(DeploymentInstance::DesiredRevision))
                    .col(boolean(DeploymentInstance::Excluded))
                    .col(boolean(DeploymentInstance::Stopped))
                    .col(big_integer_null(DeploymentInstance::RestartRequestedMs))
                    .col(string_null(DeploymentInstance::ContainerId))
                    .col(string_null(DeploymentInstance::ContainerName))
                    .col(integer_null(DeploymentInstance::ObservedRevision))
                    .col(string(DeploymentInstance::State))
                    .col(text_null(DeploymentInstance::Reason))
                    .col(string_null(DeploymentInstance::Health))
                    .col(big_integer_null(DeploymentInstance::ExitCode))
                    .col(boolean(DeploymentInstance::OomKilled))
                    .col(big_integer(DeploymentInstance::RestartCount))
                    .col(big_integer_null(DeploymentInstance::RunningSinceMs))
                    .col(integer(DeploymentInstance::Failures))
                    .col(big_integer_null(DeploymentInstance::NextRetryMs))
                    .col(big_integer(DeploymentInstance::UpdatedMs))
                    .foreign_key(&mut cascade(
                        DeploymentInstance::Table,
                        DeploymentInstance::DeploymentId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployment_instance_unique")
                    .table(DeploymentInstance::Table)
                    .col(DeploymentInstance::DeploymentId)
                    .col(DeploymentInstance::NodeId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployment_instance_node")
                    .table(DeploymentInstance::Table)
                    .col(DeploymentInstance::NodeId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeploymentRestart::Table)
                    .if_not_exists()
                    .col(
                        big_integer(DeploymentRestart::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string(DeploymentRestart::DeploymentId))
                    .col(string(DeploymentRestart::NodeId))
                    .col(integer(DeploymentRestart::Revision))
                    .col(string(DeploymentRestart::ContainerId))
                    .col(big_integer(DeploymentRestart::AtMs))
                    .col(big_integer_null(DeploymentRestart::ExitCode))
                    .col(boolean(DeploymentRestart::OomKilled))
                    .col(text(DeploymentRestart::LogTail))
                    .foreign_key(&mut cascade(
                        DeploymentRestart::Table,
                        DeploymentRestart::DeploymentId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployment_restart_unique")
                    .table(DeploymentRestart::Table)
                    .col(DeploymentRestart::ContainerId)
                    .col(DeploymentRestart::AtMs)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployment_restart_instance")
                    .table(DeploymentRestart::Table)
                    .col(DeploymentRestart::DeploymentId)
                    .col(DeploymentRestart::NodeId)
                    .col(DeploymentRestart::AtMs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Rollout::Table)
                    .if_not_exists()
                    .col(string(Rollout::Id).primary_key())
                    .col(string(Rollout::DeploymentId))
                    .col(string(Rollout::Kind))
                    .col(integer_null(Rollout::FromRevision))
                    .col(integer(Rollout::ToRevision))
                    .col(string(Rollout::State))
                    .col(text(Rollout::Batches))
                    .col(integer(Rollout::CurrentBatch))
                    .col(big_integer_null(Rollout::BatchStartedMs))
                    .col(text_null(Rollout::Reason))
                    .col(string(Rollout::StartedBy))
                    .col(big_integer(Rollout::StartedMs))
                    .col(big_integer_null(Rollout::EndedMs))
                    .foreign_key(&mut cascade(Rollout::Table, Rollout::DeploymentId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("rollout_deployment")
                    .table(Rollout::Table)
                    .col(Rollout::DeploymentId)
                    .col(Rollout::StartedMs)
                    .to_owned(),
            )
            .await?;
        // One active rollout per deployment, whatever races.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS rollout_active ON rollout (deployment_id) \
                 WHERE state IN ('running', 'paused')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Rollout::Table.into_iden(),
            DeploymentRestart::Table.into_iden(),
            DeploymentInstance::Table.into_iden(),
            DeploymentRevision::Table.into_iden(),
            Deployment::Table.into_iden(),
            ClusterIdentity::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ClusterIdentity {
    Table,
    Id,
    CreatedMs,
}

#[derive(DeriveIden)]
enum Deployment {
    Table,
    Id,
    Name,
    LatestRevision,
    TargetRevision,
    LiveRevision,
    RunState,
    RestartRequestedMs,
    Deleting,
    CreatedBy,
    CreatedMs,
    UpdatedMs,
}

#[derive(DeriveIden)]
enum DeploymentRevision {
    Table,
    Id,
    DeploymentId,
    Revision,
    Spec,
    CreatedBy,
    CreatedMs,
    Cause,
    Summary,
    Outcome,
    OutcomeReason,
}

#[derive(DeriveIden)]
enum DeploymentInstance {
    Table,
    Id,
    DeploymentId,
    NodeId,
    DesiredRevision,
    Excluded,
    Stopped,
    RestartRequestedMs,
    ContainerId,
    ContainerName,
    ObservedRevision,
    State,
    Reason,
    Health,
    ExitCode,
    OomKilled,
    RestartCount,
    RunningSinceMs,
    Failures,
    NextRetryMs,
    UpdatedMs,
}

#[derive(DeriveIden)]
enum DeploymentRestart {
    Table,
    Id,
    DeploymentId,
    NodeId,
    Revision,
    ContainerId,
    AtMs,
    ExitCode,
    OomKilled,
    LogTail,
}

#[derive(DeriveIden)]
enum Rollout {
    Table,
    Id,
    DeploymentId,
    Kind,
    FromRevision,
    ToRevision,
    State,
    Batches,
    CurrentBatch,
    BatchStartedMs,
    Reason,
    StartedBy,
    StartedMs,
    EndedMs,
}
