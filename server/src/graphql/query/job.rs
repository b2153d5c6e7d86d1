//! Job queries: the jobs on the nodes, and the kinds of job each node offers.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        types::{Job, JobKind, JobPreset, NodeView},
    },
};

/// Job queries.
#[derive(Default)]
pub struct JobQuery;

#[Object]
impl JobQuery {
    /// Every job, or those of one node, by node and name. A job that had not ended shows `LOST`
    /// while its node is lost and `OFFLINE` while its node's agent is stopped.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn jobs(&self, ctx: &Context<'_>, node_id: Option<String>) -> Result<Vec<Job>> {
        let state = ctx.data::<AppState>()?;
        let views: std::collections::HashMap<String, NodeView> = state
            .nodes
            .list()
            .await?
            .into_iter()
            .map(|n| (n.id, NodeView::of(&n.state)))
            .collect();
        Ok(state
            .jobs
            .list(node_id.as_deref())
            .await?
            .into_iter()
            .map(|row| Job {
                node: views.get(&row.node_id).copied().unwrap_or_default(),
                row,
            })
            .collect())
    }

    /// One job.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn job(&self, ctx: &Context<'_>, node_id: String, name: String) -> Result<Option<Job>> {
        let state = ctx.data::<AppState>()?;
        let node = state
            .nodes
            .get(&node_id)
            .await?
            .map_or(NodeView::Online, |n| NodeView::of(&n.state));
        Ok(state
            .jobs
            .get(&node_id, &name)
            .await?
            .map(|row| Job { row, node }))
    }

    /// The presets a node can run (those whose kind it offers), built in (`stirring`,
    /// `od_reading`, `temperature_automation`, `dosing_automation`, `add_media`, `remove_waste`,
    /// `growth_rate_calculating`, `led_intensity`) and stored by operators, with their kind and
    /// settings. Without `nodeId`: every preset.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn job_presets(
        &self,
        ctx: &Context<'_>,
        node_id: Option<String>,
    ) -> Result<Vec<JobPreset>> {
        let state = ctx.data::<AppState>()?;
        let presets = match node_id {
            Some(id) => state.jobs.presets(&id).await?,
            None => state.jobs.all_presets().await?,
        };
        Ok(presets.into_iter().map(JobPreset::from).collect())
    }

    /// The kinds of job a node offers, with each setting's type, unit, range and default (empty
    /// until its agent has said).
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn job_kinds(&self, ctx: &Context<'_>, node_id: String) -> Result<Vec<JobKind>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .jobs
            .kinds(&node_id)
            .await?
            .into_iter()
            .map(JobKind::from)
            .collect())
    }
}
