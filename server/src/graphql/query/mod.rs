//! Query root, merged from one object per domain.

mod access;
mod app;
mod audit;
mod deployment;
mod enroll;
mod experiment;
mod image;
mod job;
mod node;
mod profile;
mod telemetry;

/// The query root.
#[derive(async_graphql::MergedObject, Default)]
pub struct Query(
    audit::AuditQuery,
    access::AuthQuery,
    node::NodeQuery,
    enroll::EnrollQuery,
    job::JobQuery,
    telemetry::TelemetryQuery,
    experiment::ExperimentQuery,
    profile::ProfileQuery,
    deployment::DeploymentQuery,
    image::ImageQuery,
    app::AppQuery,
);
