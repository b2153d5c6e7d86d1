//! Image mutations: sideload an image from the leader's engine into a node's, and prune a node's
//! images no deployment needs any more. Operators act; both are in the audit log, their target
//! `node/image` or the node.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::{Principal, Role},
    graphql::{
        guard::{RoleGuard, audited},
        types::{ImageTransfer, PruneReport, RegistryCredential},
    },
};

/// Image mutations.
#[derive(Default)]
pub struct ImageMutation;

#[Object]
impl ImageMutation {
    /// Sends `image` (a tag or an id on the leader's Docker engine) into node `nodeId`'s engine,
    /// after checking the node's free disk. Returns at once with the transfer (a transfer of
    /// the same image to the node already under way is returned instead of a second);
    /// `imageTransfers` and the `imageTransferEvents` subscription follow it.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn sideload_image(
        &self,
        ctx: &Context<'_>,
        node_id: String,
        image: String,
    ) -> Result<ImageTransfer> {
        let state = ctx.data::<AppState>()?;
        let actor = ctx
            .data_opt::<Principal>()
            .map(Principal::actor)
            .unwrap_or_default();
        let target = format!("{node_id}/{image}");
        let work = state
            .images
            .sideload(&node_id, &image, "sideloadImage", &actor);
        Ok(ImageTransfer(
            audited(ctx, "sideloadImage", Some(&target), work).await?,
        ))
    }

    /// Keeps credentials for the registry `server` (`host[:port]`, as in an image's name:
    /// `registry.local:5000`, `docker.io`); nodes' engines pull its images with them. Replaces
    /// any it had. The password is never returned nor logged. Admins only.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_registry_credential(
        &self,
        ctx: &Context<'_>,
        server: String,
        username: String,
        #[graphql(secret)] password: String,
    ) -> Result<RegistryCredential> {
        let state = ctx.data::<AppState>()?;
        let actor = ctx
            .data_opt::<Principal>()
            .map(Principal::actor)
            .unwrap_or_default();
        let work = state
            .images
            .set_registry_credential(&server, &username, &password, &actor);
        Ok(RegistryCredential(
            audited(ctx, "setRegistryCredential", Some(&server), work).await?,
        ))
    }

    /// Forgets the credentials of registry `server`; whether there were any. Admins only.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn remove_registry_credential(&self, ctx: &Context<'_>, server: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let work = state.images.remove_registry_credential(&server);
        audited(ctx, "removeRegistryCredential", Some(&server), work).await
    }

    /// Removes from node `nodeId`'s engine the images of deployment revisions no deployment needs
    /// any more, keeping each deployment's current images and its last good one for a rollback,
    /// and the untagged layers Trellis's builds left. Says what went and what was freed.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn prune_images(&self, ctx: &Context<'_>, node_id: String) -> Result<PruneReport> {
        let state = ctx.data::<AppState>()?;
        let work = async {
            let (named, keep) = state.deployments.image_needs().await?;
            state.images.prune(&node_id, &named, &keep).await
        };
        let report = audited(ctx, "pruneImages", Some(&node_id), work).await?;
        Ok(PruneReport::of(&node_id, report))
    }
}
