//! GraphQL types of container deployments: deployments, their revisions, each node's instance,
//! rollouts, recorded restarts and engines' reachability.

use async_graphql::{Context, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{deployment, deployment_instance, deployment_restart, deployment_revision, rollout};

use super::time;
use crate::{
    AppState,
    deployments::{DeploymentEventKind, spec::DeploymentSpec},
};

/// A container deployment: what should run where, and how it stands.
pub struct Deployment(pub deployment::Model);

#[Object]
impl Deployment {
    /// Its id.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// Its name (fixed; containers are named `trellis-<name>-<node>-<hash>`).
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The newest revision.
    async fn latest_revision(&self) -> i32 {
        self.0.latest_revision
    }
    /// The revision that should run: the newest, or the last good one after an automatic
    /// rollback.
    async fn target_revision(&self) -> i32 {
        self.0.target_revision
    }
    /// The last revision that rolled out completely.
    async fn live_revision(&self) -> Option<i32> {
        self.0.live_revision
    }
    /// `running` or `stopped`.
    async fn run_state(&self) -> &str {
        &self.0.run_state
    }
    /// Being removed (its containers go first).
    async fn removing(&self) -> bool {
        self.0.deleting
    }
    /// Who made it.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When.
    async fn created(&self) -> DateTime<Utc> {
        time(self.0.created_ms)
    }
    /// Last change.
    async fn updated(&self) -> DateTime<Utc> {
        time(self.0.updated_ms)
    }
    /// The spec of the revision that should run.
    async fn spec(&self, ctx: &Context<'_>) -> Result<DeploymentSpec> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .deployments
            .spec(&self.0.id, self.0.target_revision)
            .await?)
    }
    /// Every node's instance.
    async fn instances(&self, ctx: &Context<'_>) -> Result<Vec<DeploymentInstance>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .deployments
            .instances(&self.0.id)
            .await?
            .into_iter()
            .map(DeploymentInstance)
            .collect())
    }
    /// Revisions, newest first.
    async fn revisions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] limit: u64,
    ) -> Result<Vec<DeploymentRevision>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .deployments
            .revisions(&self.0.id, limit.min(200))
            .await?
            .into_iter()
            .map(DeploymentRevision)
            .collect())
    }
    /// Rollouts, newest first.
    async fn rollouts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] limit: u64,
    ) -> Result<Vec<Rollout>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .deployments
            .rollouts(&self.0.id, limit.min(200))
            .await?
            .into_iter()
            .map(Rollout)
            .collect())
    }
    /// The newest rollout.
    async fn last_rollout(&self, ctx: &Context<'_>) -> Result<Option<Rollout>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .deployments
            .rollouts(&self.0.id, 1)
            .await?
            .into_iter()
            .next()
            .map(Rollout))
    }
}

/// A deployment on one node.
pub struct DeploymentInstance(pub deployment_instance::Model);

/// A node's Docker engine as the deployment workers last reached it.
#[derive(Debug, Clone, SimpleObject)]
pub struct EngineReach {
    /// Whether the last call reached it.
    pub reachable: bool,
    /// Why not, in words.
    pub reason: Option<String>,
    /// Since when it is as it is.
    pub since: DateTime<Utc>,
    /// Failed calls in a row.
    pub attempts: i32,
}

#[Object]
impl DeploymentInstance {
    /// The deployment.
    async fn deployment_id(&self) -> &str {
        &self.0.deployment_id
    }
    /// The node.
    async fn node_id(&self) -> &str {
        &self.0.node_id
    }
    /// The revision this node should run (null: none, its container is being removed).
    async fn desired_revision(&self) -> Option<i32> {
        self.0.desired_revision
    }
    /// The revision its container was made for.
    async fn observed_revision(&self) -> Option<i32> {
        self.0.observed_revision
    }
    /// PENDING, PULLING, LOADING (a sideload), BUILDING (an app built on its node), CREATING, STARTING, RUNNING, HEALTHY, UNHEALTHY, RESTARTING,
    /// CRASH_LOOP, EXITED, STOPPED, PAUSED, EXCLUDED, UNREACHABLE, NO_ENGINE, CONFLICT, FAILED or
    /// REMOVING.
    async fn state(&self) -> &str {
        &self.0.state
    }
    /// Why, in words, when it is not as it should be.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    /// The container's id.
    async fn container_id(&self) -> Option<&str> {
        self.0.container_id.as_deref()
    }
    /// The container's name.
    async fn container_name(&self) -> Option<&str> {
        self.0.container_name.as_deref()
    }
    /// Docker's health: starting, healthy or unhealthy (null: no health check).
    async fn health(&self) -> Option<&str> {
        self.0.health.as_deref()
    }
    /// The last exit code.
    async fn exit_code(&self) -> Option<i64> {
        self.0.exit_code
    }
    /// Whether the last exit was the kernel's OOM killer.
    async fn oom_killed(&self) -> bool {
        self.0.oom_killed
    }
    /// Docker's restart count of the container.
    async fn restart_count(&self) -> i64 {
        self.0.restart_count
    }
    /// Since when it runs.
    async fn running_since(&self) -> Option<DateTime<Utc>> {
        self.0.running_since_ms.map(time)
    }
    /// Taken out of the deployment on this node by a user.
    async fn excluded(&self) -> bool {
        self.0.excluded
    }
    /// Stopped on this node by a user.
    async fn stopped(&self) -> bool {
        self.0.stopped
    }
    /// Failed attempts in a row.
    async fn attempts(&self) -> i32 {
        self.0.failures
    }
    /// When the next attempt is due, after a failure.
    async fn next_retry_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_retry_ms.map(time)
    }
    /// Last change.
    async fn updated(&self) -> DateTime<Utc> {
        time(self.0.updated_ms)
    }
    /// The container's exits, newest first: when, exit code, OOM, last lines.
    async fn restarts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] limit: u64,
    ) -> Result<Vec<ContainerRestart>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .deployments
            .restarts(&self.0.deployment_id, &self.0.node_id, limit.min(200))
            .await?
            .into_iter()
            .map(ContainerRestart::from)
            .collect())
    }
    /// The node's engine as last reached.
    async fn engine(&self, ctx: &Context<'_>) -> Result<Option<EngineReach>> {
        let state = ctx.data::<AppState>()?;
        Ok(state.engines.get(&self.0.node_id).map(|e| EngineReach {
            reachable: e.reachable,
            reason: e.reason,
            since: time(e.since_ms),
            attempts: i32::try_from(e.attempts).unwrap_or(i32::MAX),
        }))
    }
}

/// One exit of a deployment's container.
#[derive(SimpleObject)]
pub struct ContainerRestart {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// Its exit code.
    pub exit_code: Option<i64>,
    /// Killed by the kernel for want of memory.
    pub oom_killed: bool,
    /// Its last log lines.
    pub log_tail: String,
    /// The revision it ran.
    pub revision: i32,
    /// The container.
    pub container_id: String,
}

impl From<deployment_restart::Model> for ContainerRestart {
    fn from(r: deployment_restart::Model) -> Self {
        ContainerRestart {
            at: time(r.at_ms),
            exit_code: r.exit_code,
            oom_killed: r.oom_killed,
            log_tail: r.log_tail,
            revision: r.revision,
            container_id: r.container_id,
        }
    }
}

/// One revision of a deployment.
pub struct DeploymentRevision(pub deployment_revision::Model);

#[Object]
impl DeploymentRevision {
    /// Its number.
    async fn revision(&self) -> i32 {
        self.0.revision
    }
    /// Who made it.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When.
    async fn created(&self) -> DateTime<Utc> {
        time(self.0.created_ms)
    }
    /// `create`, `edit` or `rollback:<from>-><to>`.
    async fn cause(&self) -> &str {
        &self.0.cause
    }
    /// What changed from the revision before, one line per field.
    async fn changes(&self) -> Vec<&str> {
        self.0.summary.lines().collect()
    }
    /// `rolled_out`, `failed`, or null while it is not known.
    async fn outcome(&self) -> Option<&str> {
        self.0.outcome.as_deref()
    }
    /// Why it failed.
    async fn outcome_reason(&self) -> Option<&str> {
        self.0.outcome_reason.as_deref()
    }
    /// The whole spec.
    async fn spec(&self) -> Result<DeploymentSpec> {
        serde_json::from_str(&self.0.spec).map_err(|_| "this revision does not read".into())
    }
}

/// A rollout of one revision, batch by batch.
pub struct Rollout(pub rollout::Model);

#[Object]
impl Rollout {
    /// Its id.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// `update`, `rollback` (asked for) or `auto_rollback` (after a failure).
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    /// The revision it leaves.
    async fn from_revision(&self) -> Option<i32> {
        self.0.from_revision
    }
    /// The revision it brings.
    async fn to_revision(&self) -> i32 {
        self.0.to_revision
    }
    /// `running`, `paused`, `succeeded`, `failed`, `rolled_back` or `superseded`.
    async fn state(&self) -> &str {
        &self.0.state
    }
    /// The batches of node ids, in order.
    async fn batches(&self) -> Vec<Vec<String>> {
        serde_json::from_str(&self.0.batches).unwrap_or_default()
    }
    /// The batch under way (0-based; equal to the number of batches once all passed).
    async fn current_batch(&self) -> i32 {
        self.0.current_batch
    }
    /// When the current batch opened.
    async fn batch_started(&self) -> Option<DateTime<Utc>> {
        self.0.batch_started_ms.map(time)
    }
    /// Why it failed, paused or was replaced.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    /// Who started it (`system` for an automatic rollback).
    async fn started_by(&self) -> &str {
        &self.0.started_by
    }
    /// When.
    async fn started(&self) -> DateTime<Utc> {
        time(self.0.started_ms)
    }
    /// When it ended.
    async fn ended(&self) -> Option<DateTime<Utc>> {
        self.0.ended_ms.map(time)
    }
}

/// Something changed about deployments.
#[derive(SimpleObject)]
pub struct DeploymentEvent {
    /// What.
    pub kind: DeploymentEventKind,
    /// The deployment (empty for `RESYNC`).
    pub deployment_id: String,
    /// The node, for an instance.
    pub node_id: Option<String>,
}
