//! Adds where a node's Docker engine listens and whether an admin allowed plain TCP to it.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `node.docker_endpoint` and `node.docker_insecure`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .add_column(string_null(Node::DockerEndpoint))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .add_column(boolean(Node::DockerInsecure).default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .drop_column(Node::DockerInsecure)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Node::Table)
                    .drop_column(Node::DockerEndpoint)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Node {
    Table,
    DockerEndpoint,
    DockerInsecure,
}
