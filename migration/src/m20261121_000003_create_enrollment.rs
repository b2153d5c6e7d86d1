//! Creates join tokens, enrollment requests and per-node MQTT credentials.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates the enrollment tables.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JoinToken::Table)
                    .if_not_exists()
                    .col(string(JoinToken::Id).primary_key())
                    .col(string(JoinToken::Name))
                    .col(string_uniq(JoinToken::TokenHash))
                    .col(string(JoinToken::CreatedBy))
                    .col(timestamp_with_time_zone(JoinToken::CreatedAt))
                    .col(timestamp_with_time_zone_null(JoinToken::ExpiresAt))
                    .col(timestamp_with_time_zone_null(JoinToken::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Enrollment::Table)
                    .if_not_exists()
                    .col(string(Enrollment::NodeId).primary_key())
                    .col(json(Enrollment::Facts))
                    .col(string(Enrollment::JoinTokenId))
                    .col(string(Enrollment::Nonce))
                    .col(timestamp_with_time_zone(Enrollment::RequestedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NodeCredential::Table)
                    .if_not_exists()
                    .col(string(NodeCredential::NodeId).primary_key())
                    .col(string(NodeCredential::PasswordHash))
                    .col(string(NodeCredential::MosquittoHash))
                    .col(timestamp_with_time_zone(NodeCredential::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            NodeCredential::Table.into_iden(),
            Enrollment::Table.into_iden(),
            JoinToken::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum JoinToken {
    Table,
    Id,
    Name,
    TokenHash,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Enrollment {
    Table,
    NodeId,
    Facts,
    JoinTokenId,
    Nonce,
    RequestedAt,
}

#[derive(DeriveIden)]
enum NodeCredential {
    Table,
    NodeId,
    PasswordHash,
    MosquittoHash,
    CreatedAt,
}
