//! The GraphQL API, the one API of Trellis: queries and mutations over the service layer, and
//! subscriptions fed by in-process broadcast channels. Resolvers stay thin.

pub mod guard;
pub mod mutation;
pub mod query;
pub mod stream;
pub mod subscription;
pub mod types;

use async_graphql::Schema;

use crate::AppState;

/// The executable schema.
pub type TrellisSchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

/// Longest query nesting accepted. Our schema has no cycles, so real queries are shallow; the
/// limit sits above the introspection query GraphiQL sends (about 15 levels of `ofType`).
pub const MAX_DEPTH: usize = 24;
/// Highest query complexity accepted (each field counts one). The introspection query is a few
/// hundred; anything far above that is an attempt to make the server work hard.
pub const MAX_COMPLEXITY: usize = 1000;

/// Builds the schema; `state` is `None` when only the SDL is wanted.
pub fn build_schema(state: Option<AppState>) -> TrellisSchema {
    let introspection = state.as_ref().is_none_or(|s| s.config.introspection);
    let mut builder = Schema::build(
        query::Query::default(),
        mutation::Mutation::default(),
        subscription::Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .data(types::RenderedFrames::default());
    if !introspection {
        builder = builder.disable_introspection();
    }
    if let Some(state) = state {
        builder = builder.data(state);
    }
    builder.finish()
}

/// The SDL as committed in `schema.graphql` (`trellis schema > schema.graphql` regenerates it).
pub fn sdl() -> String {
    build_schema(None).sdl()
}
