//! Images with no registry: each node's free disk as its agent reports it, and a record of every
//! image transfer from the leader's engine to a node's (sideload), with its progress.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `node.disk_path`, `node.disk_free_bytes`, `node.disk_total_bytes`; creates
/// `image_transfer`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for col in [
            string_null(Node::DiskPath),
            big_integer_null(Node::DiskFreeBytes),
            big_integer_null(Node::DiskTotalBytes),
        ] {
            manager
                .alter_table(Table::alter().table(Node::Table).add_column(col).to_owned())
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(ImageTransfer::Table)
                    .if_not_exists()
                    .col(string(ImageTransfer::Id).primary_key())
                    .col(string(ImageTransfer::NodeId))
                    .col(string(ImageTransfer::Image))
                    .col(string_null(ImageTransfer::ImageId))
                    .col(string(ImageTransfer::State))
                    .col(big_integer(ImageTransfer::Bytes))
                    .col(big_integer_null(ImageTransfer::TotalBytes))
                    .col(text_null(ImageTransfer::Error))
                    .col(string(ImageTransfer::Cause))
                    .col(string(ImageTransfer::CreatedBy))
                    .col(big_integer(ImageTransfer::StartedMs))
                    .col(big_integer_null(ImageTransfer::FinishedMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("image_transfer_node_started")
                    .table(ImageTransfer::Table)
                    .col(ImageTransfer::NodeId)
                    .col(ImageTransfer::StartedMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ImageTransfer::Table).to_owned())
            .await?;
        for col in [Node::DiskPath, Node::DiskFreeBytes, Node::DiskTotalBytes] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Node::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Node {
    Table,
    DiskPath,
    DiskFreeBytes,
    DiskTotalBytes,
}

#[derive(DeriveIden)]
enum ImageTransfer {
    Table,
    Id,
    NodeId,
    Image,
    ImageId,
    State,
    Bytes,
    TotalBytes,
    Error,
    Cause,
    CreatedBy,
    StartedMs,
    FinishedMs,
}
