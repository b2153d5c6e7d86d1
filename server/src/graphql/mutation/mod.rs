//! Mutation root, merged from one object per domain.

mod access;
mod app;
mod deployment;
mod enroll;
mod experiment;
mod image;
mod job;
mod node;
mod profile;
mod telemetry;

/// The mutation root.
#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(
    access::AuthMutation,
    node::NodeMutation,
    enroll::EnrollMutation,
    job::JobMutation,
    experiment::ExperimentMutation,
    telemetry::TelemetryMutation,
    profile::ProfileMutation,
    deployment::DeploymentMutation,
    image::ImageMutation,
    app::AppMutation,
);
