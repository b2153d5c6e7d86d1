//! Deployment queries: deployments with their instances, revisions and rollouts, one
//! revision's spec, the diff between two, and which nodes a target would choose.

use async_graphql::{Context, Object, Result, SimpleObject};

use crate::{
    AppState,
    access::Role,
    deployments::spec::{self, Target},
    graphql::{
        guard::RoleGuard,
        types::{Deployment, DeploymentInstance, DeploymentRevision},
    },
};

/// Deployment queries.
#[derive(Default)]
pub struct DeploymentQuery;

/// A node a target chooses.
#[derive(SimpleObject)]
pub struct TargetNode {
    /// The node.
    pub node_id: String,
    /// Its name or hostname.
    pub name: String,
    /// Whether it announced a Docker engine.
    pub has_engine: bool,
}

#[Object]
impl DeploymentQuery {
    /// Every deployment, by name.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn deployments(&self, ctx: &Context<'_>) -> Result<Vec<Deployment>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .deployments
            .list()
            .await?
            .into_iter()
            .map(Deployment)
            .collect())
    }

    /// One deployment by id or name; null when there is none.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn deployment(&self, ctx: &Context<'_>, id: String) -> Result<Option<Deployment>> {
        let state = ctx.data::<AppState>()?;
        match state.deployments.find(&id).await {
            Ok(d) => Ok(Some(Deployment(d))),
            Err(crate::error::ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One revision of a deployment.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn deployment_revision(
        &self,
        ctx: &Context<'_>,
        id: String,
        revision: i32,
    ) -> Result<DeploymentRevision> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        Ok(DeploymentRevision(
            state.deployments.revision(&d.id, revision).await?,
        ))
    }

    /// What changed from revision `from` to revision `to`, one line per field.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn deployment_revision_diff(
        &self,
        ctx: &Context<'_>,
        id: String,
        from: i32,
        to: i32,
    ) -> Result<Vec<String>> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        let a = state.deployments.spec(&d.id, from).await?;
        let b = state.deployments.spec(&d.id, to).await?;
        Ok(spec::diff(&a, &b))
    }

    /// One node's instance of a deployment.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn deployment_instance(
        &self,
        ctx: &Context<'_>,
        deployment_id: String,
        node_id: String,
    ) -> Result<DeploymentInstance> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&deployment_id).await?;
        Ok(DeploymentInstance(
            state.deployments.instance(&d.id, &node_id).await?,
        ))
    }

    /// Every deployment's instance on one node.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn node_instances(
        &self,
        ctx: &Context<'_>,
        node_id: String,
    ) -> Result<Vec<DeploymentInstance>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .deployments
            .instances_on(&node_id)
            .await?
            .into_iter()
            .map(DeploymentInstance)
            .collect())
    }

    /// The nodes a target chooses now (the same rule the reconciler uses).
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn preview_deployment_target(
        &self,
        ctx: &Context<'_>,
        target: Target,
    ) -> Result<Vec<TargetNode>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .deployments
            .preview(&target)
            .await?
            .into_iter()
            .map(|n| TargetNode {
                name: n.name.clone().unwrap_or_else(|| n.hostname.clone()),
                has_engine: n.docker_endpoint.is_some(),
                node_id: n.id,
            })
            .collect())
    }
}
