//! Node queries.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::Role,
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

    /// Asks a node's Docker engine what it is, over the transport the rules allow (see
    /// `Node.docker`): `UNAVAILABLE` when it cannot be reached that way, `FORBIDDEN` when the
    /// endpoint may not be used at all.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn docker_engine(
        &self,
        ctx: &Context<'_>,
        node_id: String,
    ) -> Result<crate::nodes::docker::DockerEngine> {
        let state = ctx.data::<AppState>()?;
        let node = state
            .nodes
            .get(&node_id)
            .await?
            .ok_or_else(|| crate::error::ApiError::NotFound(format!("node {node_id:?}")))?;
        Ok(state.docker.engine(&node).await?)
    }

    /// One node by id, or null.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn node(&self, ctx: &Context<'_>, id: String) -> Result<Option<Node>> {
        let state = ctx.data::<AppState>()?;
        Ok(state.nodes.get(&id).await?.map(Node))
    }
}
