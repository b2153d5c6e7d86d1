//! Node queries.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    auth::Role,
    graphql::{guard::RoleGuard, types::Node},
};

/// Node queries.
#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Every node of the cluster, by name.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn nodes(&self, ctx: &Context<'_>) -> Result<Vec<Node>> {
        let state = ctx.data::<AppState>()?;
        Ok(state.nodes.list().await?.into_iter().map(Node).collect())
    }

    /// One node by id, or null.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn node(&self, ctx: &Context<'_>, id: String) -> Result<Option<Node>> {
        let state = ctx.data::<AppState>()?;
        Ok(state.nodes.get(&id).await?.map(Node))
    }
}
