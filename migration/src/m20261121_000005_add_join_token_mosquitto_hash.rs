//! Adds the Mosquitto hash of a join token, so a Mosquitto the leader manages can let enrolling
//! agents in.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `join_token.mosquitto_hash`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(JoinToken::Table)
                    .add_column(string_null(JoinToken::MosquittoHash))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(JoinToken::Table)
                    .drop_column(JoinToken::MosquittoHash)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum JoinToken {
    Table,
    MosquittoHash,
}
