//! Query root, merged from one object per domain.

mod audit;
mod auth;
mod enroll;
mod node;

/// The query root.
#[derive(async_graphql::MergedObject, Default)]
pub struct Query(
    audit::AuditQuery,
    auth::AuthQuery,
    node::NodeQuery,
    enroll::EnrollQuery,
);
