//! Creates the `node` table.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates the `node` table.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Node::Table)
                    .if_not_exists()
                    .col(string(Node::Id).primary_key())
                    .col(string_null(Node::Name))
                    .col(json(Node::Labels))
                    .col(string(Node::State))
                    .col(string(Node::Hostname))
                    .col(string_null(Node::Mac))
                    .col(json(Node::IpAddresses))
                    .col(string(Node::Arch))
                    .col(string(Node::Os))
                    .col(string_null(Node::Model))
                    .col(string(Node::AgentVersion))
                    .col(string(Node::Hardware))
                    .col(big_integer(Node::HeartbeatIntervalSecs))
                    .col(double_null(Node::CpuPercent))
                    .col(big_integer_null(Node::MemUsedBytes))
                    .col(big_integer_null(Node::MemTotalBytes))
                    .col(double_null(Node::TemperatureC))
                    .col(big_integer_null(Node::UptimeSecs))
                    .col(timestamp_with_time_zone(Node::FirstSeen))
                    .col(timestamp_with_time_zone(Node::LastSeen))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Node::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Node {
    Table,
    Id,
    Name,
    Labels,
    State,
    Hostname,
    Mac,
    IpAddresses,
    Arch,
    Os,
    Model,
    AgentVersion,
    Hardware,
    HeartbeatIntervalSecs,
    CpuPercent,
    MemUsedBytes,
    MemTotalBytes,
    TemperatureC,
    UptimeSecs,
    FirstSeen,
    LastSeen,
}
