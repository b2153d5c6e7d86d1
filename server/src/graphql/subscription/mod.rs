//! Subscription root, merged from one object per domain.

mod app;
mod audit;
mod deployment;
mod experiment;
mod image;
mod job;
mod node;
mod telemetry;

/// The subscription root.
#[derive(async_graphql::MergedSubscription, Default)]
pub struct Subscription(
    audit::AuditSubscription,
    node::NodeSubscription,
    job::JobSubscription,
    telemetry::TelemetrySubscription,
    experiment::ExperimentSubscription,
    deployment::DeploymentSubscription,
    image::ImageSubscription,
    app::AppSubscription,
);
