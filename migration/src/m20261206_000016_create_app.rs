//! App bundles: apps and their versions, each version's bundle (stored on the leader's disk),
//! its parameters, and its build (state, log, image).

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `app` and `app_version`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(App::Table)
                    .if_not_exists()
                    .col(string(App::Name).primary_key())
                    .col(text_null(App::Description))
                    .col(text(App::Tags))
                    .col(string(App::CreatedBy))
                    .col(big_integer(App::CreatedMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AppVersion::Table)
                    .if_not_exists()
                    .col(string(AppVersion::Id).primary_key())
                    .col(string(AppVersion::App))
                    .col(string(AppVersion::Version))
                    .col(string(AppVersion::Kind))
                    .col(text_null(AppVersion::Description))
                    .col(text(AppVersion::Params))
                    .col(string_null(AppVersion::BundlePath))
                    .col(string(AppVersion::BundleSha256))
                    .col(big_integer(AppVersion::BundleBytes))
                    .col(string_null(AppVersion::StripDir))
                    .col(string(AppVersion::BuildOn))
                    .col(string(AppVersion::BuildState))
                    .col(text(AppVersion::BuildLog))
                    .col(text_null(AppVersion::BuildError))
                    .col(text_null(AppVersion::DeployError))
                    .col(string(AppVersion::Image))
                    .col(string_null(AppVersion::ImageId))
                    .col(string(AppVersion::CreatedBy))
                    .col(big_integer(AppVersion::CreatedMs))
                    .col(big_integer_null(AppVersion::BuiltMs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AppVersion::Table, AppVersion::App)
                            .to(App::Table, App::Name)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("app_version_app_version")
                    .table(AppVersion::Table)
                    .col(AppVersion::App)
                    .col(AppVersion::Version)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AppVersion::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(App::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum App {
    Table,
    Name,
    Description,
    Tags,
    CreatedBy,
    CreatedMs,
}

#[derive(DeriveIden)]
enum AppVersion {
    Table,
    Id,
    App,
    Version,
    Kind,
    Description,
    Params,
    BundlePath,
    BundleSha256,
    BundleBytes,
    StripDir,
    BuildOn,
    BuildState,
    BuildLog,
    BuildError,
    DeployError,
    Image,
    ImageId,
    CreatedBy,
    CreatedMs,
    BuiltMs,
}
