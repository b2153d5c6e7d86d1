//! Query root, merged from one object per domain.

mod node;

/// The query root.
#[derive(async_graphql::MergedObject, Default)]
pub struct Query(node::NodeQuery);
