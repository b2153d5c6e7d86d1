//! Registry credentials the leader keeps, one per registry host; nodes' engines pull with them.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `registry_credential`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RegistryCredential::Table)
                    .if_not_exists()
                    .col(string(RegistryCredential::Server).primary_key())
                    .col(string(RegistryCredential::Username))
                    .col(text(RegistryCredential::Secret))
                    .col(string(RegistryCredential::UpdatedBy))
                    .col(big_integer(RegistryCredential::UpdatedMs))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RegistryCredential::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RegistryCredential {
    Table,
    Server,
    Username,
    Secret,
    UpdatedBy,
    UpdatedMs,
}
