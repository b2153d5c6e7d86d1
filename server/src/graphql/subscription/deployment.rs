//! Deployment subscriptions: changes to deployments, instances and rollouts (from the service's
//! broadcast channel, `RESYNC` for a client that fell behind), and an instance's live logs and
//! stats (each subscriber its own stream from the node's engine).

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};

use crate::{
    AppState,
    access::Role,
    deployments::{
        DeploymentEventKind,
        live::{self, ContainerLogLine, ContainerStats},
    },
    graphql::{guard::RoleGuard, stream::resyncing, types::DeploymentEvent},
};

/// Deployment subscriptions.
#[derive(Default)]
pub struct DeploymentSubscription;

#[Subscription]
impl DeploymentSubscription {
    /// Every change to deployments (to one, when `deploymentId` is given): the deployment, an
    /// instance, a rollout, removal; or `RESYNC`.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn deployment_events(
        &self,
        ctx: &Context<'_>,
        deployment_id: Option<String>,
    ) -> Result<impl Stream<Item = DeploymentEvent>> {
        let state = ctx.data::<AppState>()?;
        let events = resyncing(
            state.deployments.subscribe(),
            |e| DeploymentEvent {
                kind: e.kind,
                deployment_id: e.deployment_id,
                node_id: e.node_id,
            },
            || DeploymentEvent {
                kind: DeploymentEventKind::Resync,
                deployment_id: String::new(),
                node_id: None,
            },
        );
        let wanted = match deployment_id {
            Some(id) => Some(state.deployments.find(&id).await?.id),
            None => None,
        };
        Ok(events.filter(move |e| {
            let keep = e.kind == DeploymentEventKind::Resync
                || wanted.as_deref().is_none_or(|w| w == e.deployment_id);
            futures::future::ready(keep)
        }))
    }

    /// One node's container log: the last `tail` lines (or those from `since`), then, with
    /// `follow`, each new line as it comes, across the instance's containers: when one is
    /// replaced (a rollout, a rollback, a change by hand undone), a `TRELLIS` line names the new
    /// one and its log follows from its start; a container that stops and runs again goes on
    /// where it stopped. Ends when the instance goes (or, without `follow`, at the last line).
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn container_logs(
        &self,
        ctx: &Context<'_>,
        deployment_id: String,
        node_id: String,
        #[graphql(default = 100)] tail: u32,
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[graphql(default = true)] follow: bool,
    ) -> Result<impl Stream<Item = ContainerLogLine>> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&deployment_id).await?;
        let (engine, container) = state
            .deployments
            .instance_container(&state.docker, &d.id, &node_id)
            .await?;
        Ok(live::follow_instance(
            state.deployments.clone(),
            engine,
            d.id,
            node_id,
            container,
            tail.min(10_000),
            since,
            follow,
        ))
    }

    /// One node's container resource use, about once a second.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn container_stats(
        &self,
        ctx: &Context<'_>,
        deployment_id: String,
        node_id: String,
    ) -> Result<impl Stream<Item = ContainerStats>> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&deployment_id).await?;
        let (engine, container) = state
            .deployments
            .instance_container(&state.docker, &d.id, &node_id)
            .await?;
        Ok(live::stats(&engine, &container).boxed())
    }
}
