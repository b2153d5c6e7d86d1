//! Experiment profiles: the stored profiles, their runs on experiments, and each run's steps (one
//! row per action instance begun, so a restarted leader neither repeats nor forgets one).

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `profile`, `profile_run` and `profile_step`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Profile::Table)
                    .if_not_exists()
                    .col(string(Profile::Name).primary_key())
                    .col(text(Profile::Source))
                    .col(string(Profile::UpdatedBy))
                    .col(big_integer(Profile::UpdatedMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProfileRun::Table)
                    .if_not_exists()
                    .col(string(ProfileRun::Id).primary_key())
                    .col(string(ProfileRun::ExperimentId))
                    .col(string(ProfileRun::ProfileName))
                    .col(text(ProfileRun::Source))
                    .col(double(ProfileRun::TimeScale))
                    .col(string(ProfileRun::State))
                    .col(big_integer(ProfileRun::StartedMs))
                    .col(big_integer_null(ProfileRun::PausedAtMs))
                    .col(big_integer(ProfileRun::PausedTotalMs))
                    .col(big_integer_null(ProfileRun::EndedMs))
                    .col(string(ProfileRun::StartedBy))
                    .col(json(ProfileRun::Nodes))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProfileRun::Table, ProfileRun::ExperimentId)
                            .to(Experiment::Table, Experiment::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProfileStep::Table)
                    .if_not_exists()
                    .col(string(ProfileStep::RunId))
                    .col(string(ProfileStep::Key))
                    .col(big_integer(ProfileStep::DueMs))
                    .col(string(ProfileStep::NodeId))
                    .col(string(ProfileStep::Job))
                    .col(string(ProfileStep::Action))
                    .col(string(ProfileStep::State))
                    .col(text(ProfileStep::Outcome))
                    .col(big_integer(ProfileStep::AtMs))
                    .primary_key(
                        Index::create()
                            .col(ProfileStep::RunId)
                            .col(ProfileStep::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProfileStep::Table, ProfileStep::RunId)
                            .to(ProfileRun::Table, ProfileRun::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            ProfileStep::Table.into_iden(),
            ProfileRun::Table.into_iden(),
            Profile::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Profile {
    Table,
    Name,
    Source,
    UpdatedBy,
    UpdatedMs,
}

#[derive(DeriveIden)]
enum ProfileRun {
    Table,
    Id,
    ExperimentId,
    ProfileName,
    Source,
    TimeScale,
    State,
    StartedMs,
    PausedAtMs,
    PausedTotalMs,
    EndedMs,
    StartedBy,
    Nodes,
}

#[derive(DeriveIden)]
enum ProfileStep {
    Table,
    RunId,
    Key,
    DueMs,
    NodeId,
    Job,
    Action,
    State,
    Outcome,
    AtMs,
}

#[derive(DeriveIden)]
enum Experiment {
    Table,
    Id,
}
