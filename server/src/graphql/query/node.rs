//! Node queries.

use async_graphql::{Context, Object, Result};

use crate::{AppState, graphql::types::Node};

/// Node queries.
#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Every node of the cluster, by name.
    async fn nodes(&self, ctx: &Context<'_>) -> Result<Vec<Node>> {
        let state = ctx.data::<AppState>()?;
        Ok(state.nodes.list().await?.into_iter().map(Node).collect())
    }

    /// One node by id, or null.
    async fn node(&self, ctx: &Context<'_>, id: String) -> Result<Option<Node>> {
        let state = ctx.data::<AppState>()?;
        Ok(state.nodes.get(&id).await?.map(Node))
    }
}
