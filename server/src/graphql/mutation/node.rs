//! Node mutations: rename, label, remove.

use async_graphql::{Context, InputObject, Object, Result};

use crate::{AppState, error::ApiError, graphql::types::Node};

/// A label to set.
#[derive(InputObject)]
pub struct LabelInput {
    /// Key, 1–64 characters.
    pub key: String,
    /// Value, up to 64 characters.
    pub value: String,
}

/// Node mutations.
#[derive(Default)]
pub struct NodeMutation;

#[Object]
impl NodeMutation {
    /// Gives a node a display name; null or blank goes back to the hostname.
    async fn rename_node(
        &self,
        ctx: &Context<'_>,
        id: String,
        name: Option<String>,
    ) -> Result<Node> {
        let state = ctx.data::<AppState>()?;
        Ok(Node(state.nodes.rename(&id, name).await?))
    }

    /// Replaces a node's labels.
    async fn set_node_labels(
        &self,
        ctx: &Context<'_>,
        id: String,
        labels: Vec<LabelInput>,
    ) -> Result<Node> {
        let state = ctx.data::<AppState>()?;
        let labels = labels.into_iter().map(|l| (l.key, l.value)).collect();
        Ok(Node(state.nodes.set_labels(&id, labels).await?))
    }

    /// Removes a node and clears its retained MQTT topics, so it does not come back as a ghost.
    /// A node whose agent still runs appears again when that agent next connects.
    async fn remove_node(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        state.nodes.remove(&id).await?;
        if let Err(e) = state.bridge.clear_retained(&id).await {
            return Err(ApiError::Internal(format!(
                "node removed but its retained topics were not cleared: {e}"
            ))
            .into());
        }
        Ok(true)
    }
}
