//! Image queries: transfers (sideloads) and the images on a node's engine. Viewers read.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        types::{ImageTransfer, NodeImage, RegistryCredential},
    },
};

/// Image queries.
#[derive(Default)]
pub struct ImageQuery;

#[Object]
impl ImageQuery {
    /// The newest image transfers (of one node when `nodeId` is given), newest first.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn image_transfers(
        &self,
        ctx: &Context<'_>,
        node_id: Option<String>,
        #[graphql(default = 50)] limit: u32,
    ) -> Result<Vec<ImageTransfer>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .images
            .list(node_id.as_deref(), u64::from(limit))
            .await?
            .into_iter()
            .map(ImageTransfer)
            .collect())
    }

    /// One image transfer.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn image_transfer(&self, ctx: &Context<'_>, id: String) -> Result<Option<ImageTransfer>> {
        let state = ctx.data::<AppState>()?;
        Ok(state.images.get(&id).await?.map(ImageTransfer))
    }

    /// The registries the leader keeps credentials for (never their passwords). Operators read.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn registry_credentials(&self, ctx: &Context<'_>) -> Result<Vec<RegistryCredential>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .images
            .registry_credentials()
            .await?
            .into_iter()
            .map(RegistryCredential)
            .collect())
    }

    /// The images on a node's Docker engine, newest first; those of apps (installed apps) say
    /// which app and version, and how many of their containers run. `UNAVAILABLE` when the engine cannot
    /// be reached.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn node_images(&self, ctx: &Context<'_>, node_id: String) -> Result<Vec<NodeImage>> {
        let state = ctx.data::<AppState>()?;
        Ok(state.images.on_node(&node_id).await?)
    }
}
