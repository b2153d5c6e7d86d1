//! The GraphQL API, the one API of Trellis: queries and mutations over the service layer, and
//! subscriptions fed by in-process broadcast channels. Resolvers stay thin.

pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use async_graphql::Schema;

use crate::AppState;

/// The executable schema.
pub type TrellisSchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

/// Longest query nesting accepted.
pub const MAX_DEPTH: usize = 12;
/// Highest query complexity accepted (each field counts one, lists multiply nothing here).
pub const MAX_COMPLEXITY: usize = 500;

/// Builds the schema; `state` is `None` when only the SDL is wanted.
pub fn build_schema(state: Option<AppState>) -> TrellisSchema {
    let mut builder = Schema::build(
        query::Query::default(),
        mutation::Mutation::default(),
        subscription::Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY);
    if let Some(state) = state {
        builder = builder.data(state);
    }
    builder.finish()
}

/// The SDL as committed in `schema.graphql` (`trellis schema > schema.graphql` regenerates it).
pub fn sdl() -> String {
    build_schema(None).sdl()
}
