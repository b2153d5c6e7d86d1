//! The names an experiment has had, each from when: its events recorded under an earlier name
//! (the audit log's target is the name at the time) stay its events after a rename.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `experiment_name`, filled with every experiment's current name from its creation.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ExperimentName::Table)
                    .if_not_exists()
                    .col(
                        big_integer(ExperimentName::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string(ExperimentName::ExperimentId))
                    .col(string(ExperimentName::Name))
                    // From when the experiment had this name, ms since the Unix epoch.
                    .col(big_integer(ExperimentName::FromMs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ExperimentName::Table, ExperimentName::ExperimentId)
                            .to(Experiment::Table, Experiment::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("experiment_name_experiment")
                    .table(ExperimentName::Table)
                    .col(ExperimentName::ExperimentId)
                    .col(ExperimentName::FromMs)
                    .to_owned(),
            )
            .await?;
        // Names before this migration are not known: the current one counts from the creation.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO experiment_name (experiment_id, name, from_ms) \
                 SELECT id, name, created_ms FROM experiment",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ExperimentName::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ExperimentName {
    Table,
    Id,
    ExperimentId,
    Name,
    FromMs,
}

#[derive(DeriveIden)]
enum Experiment {
    Table,
    Id,
}
