//! Mutation root, merged from one object per domain.

mod auth;
mod enroll;
mod node;

/// The mutation root.
#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(
    auth::AuthMutation,
    node::NodeMutation,
    enroll::EnrollMutation,
);
