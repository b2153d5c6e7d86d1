//! Database migrations, run at server start-up (`trellis migrate` runs them by hand). A migration that
//! has shipped is never edited: change the schema with a new one.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_node;
mod m20261121_000002_create_auth_and_audit;
mod m20261121_000003_create_enrollment;
mod m20261121_000004_add_node_docker;
mod m20261121_000005_add_join_token_mosquitto_hash;
mod m20261129_000006_create_job;
mod m20261129_000007_add_node_clock_offset;
mod m20261129_000008_create_telemetry;
mod m20261202_000009_create_experiment;
mod m20261202_000010_create_retention;
mod m20261202_000011_create_profile;
mod m20261206_000012_create_reading_minute;
mod m20261206_000013_create_experiment_name;
mod m20261206_000014_create_deployment;
mod m20261206_000015_create_images;
mod m20261206_000016_create_app;
mod m20261206_000017_create_registry_credential;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_node::Migration),
            Box::new(m20261121_000002_create_auth_and_audit::Migration),
            Box::new(m20261121_000003_create_enrollment::Migration),
            Box::new(m20261121_000004_add_node_docker::Migration),
            Box::new(m20261121_000005_add_join_token_mosquitto_hash::Migration),
            Box::new(m20261129_000006_create_job::Migration),
            Box::new(m20261129_000007_add_node_clock_offset::Migration),
            Box::new(m20261129_000008_create_telemetry::Migration),
            Box::new(m20261202_000009_create_experiment::Migration),
            Box::new(m20261202_000010_create_retention::Migration),
            Box::new(m20261202_000011_create_profile::Migration),
            Box::new(m20261206_000012_create_reading_minute::Migration),
            Box::new(m20261206_000013_create_experiment_name::Migration),
            Box::new(m20261206_000014_create_deployment::Migration),
            Box::new(m20261206_000015_create_images::Migration),
            Box::new(m20261206_000016_create_app::Migration),
            Box::new(m20261206_000017_create_registry_credential::Migration),
        ]
    }
}
