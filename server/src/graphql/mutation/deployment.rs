//! Deployment mutations: create, edit, roll back, pause and resume rollouts, start, stop,
//! restart, take a node out or back in, remove, and run a command in an instance. Operators act;
//! privileged settings (privileged, host modes, devices, node paths) need an admin. Every one is
//! in the audit log, its target the deployment's name (`name/node` for one instance).

use std::time::Duration;

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::{Principal, Role},
    deployments::{
        live::{self, ExecResult},
        spec::{self, DeploymentSpec},
    },
    error::ApiError,
    graphql::{
        guard::{RoleGuard, audited, principal},
        types::{Deployment, Rollout},
    },
};

/// Deployment mutations.
#[derive(Default)]
pub struct DeploymentMutation;

fn actor(ctx: &Context<'_>) -> String {
    ctx.data_opt::<Principal>()
        .map(Principal::actor)
        .unwrap_or_default()
}

/// `FORBIDDEN` naming the fields when an operator asks for what only an admin may.
fn check_privileges(ctx: &Context<'_>, spec: &DeploymentSpec) -> Result<(), ApiError> {
    let fields = spec::privileged_fields(spec);
    let role = principal(ctx)?.role;
    if fields.is_empty() || role >= Role::Admin {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "only an admin may set {}",
        fields.join(", ")
    )))
}

fn target(name: &str, node: Option<&str>) -> String {
    match node {
        Some(n) => format!("{name}/{n}"),
        None => name.to_owned(),
    }
}

#[Object]
impl DeploymentMutation {
    /// Makes a deployment and rolls out its first revision. `CONFLICT` when the name is taken.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn create_deployment(
        &self,
        ctx: &Context<'_>,
        name: String,
        spec: DeploymentSpec,
    ) -> Result<Deployment> {
        let state = ctx.data::<AppState>()?;
        let actor = actor(ctx);
        let work = async {
            check_privileges(ctx, &spec)?;
            state.deployments.create(&name, spec, &actor).await
        };
        Ok(Deployment(
            audited(ctx, "createDeployment", Some(&name), work).await?,
        ))
    }

    /// A new revision with `spec`, rolled out by its update settings. With `expectedRevision`,
    /// `CONFLICT` when someone else made a newer revision meanwhile.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn update_deployment(
        &self,
        ctx: &Context<'_>,
        id: String,
        spec: DeploymentSpec,
        expected_revision: Option<i32>,
    ) -> Result<Deployment> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        let actor = actor(ctx);
        let work = async {
            check_privileges(ctx, &spec)?;
            state
                .deployments
                .update(&d.id, spec, expected_revision, &actor)
                .await
        };
        Ok(Deployment(
            audited(ctx, "updateDeployment", Some(&d.name), work).await?,
        ))
    }

    /// Rolls back to revision `toRevision`: a new revision with its spec, rolled out like any
    /// change (the history stays in order).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn rollback_deployment(
        &self,
        ctx: &Context<'_>,
        id: String,
        to_revision: i32,
    ) -> Result<Deployment> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        let actor = actor(ctx);
        let work = async {
            let spec = state.deployments.spec(&d.id, to_revision).await?;
            check_privileges(ctx, &spec)?;
            state.deployments.rollback(&d.id, to_revision, &actor).await
        };
        Ok(Deployment(
            audited(ctx, "rollbackDeployment", Some(&d.name), work).await?,
        ))
    }

    /// Pauses the running rollout at its batch.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn pause_rollout(&self, ctx: &Context<'_>, id: String) -> Result<Rollout> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        let work = state.deployments.pause_rollout(&d.id);
        Ok(Rollout(
            audited(ctx, "pauseRollout", Some(&d.name), work).await?,
        ))
    }

    /// Resumes a paused rollout: its batch is judged again from now.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn resume_rollout(&self, ctx: &Context<'_>, id: String) -> Result<Rollout> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        let work = state.deployments.resume_rollout(&d.id);
        Ok(Rollout(
            audited(ctx, "resumeRollout", Some(&d.name), work).await?,
        ))
    }

    /// Starts a stopped deployment (or one node's instance).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn start_deployment(
        &self,
        ctx: &Context<'_>,
        id: String,
        node_id: Option<String>,
    ) -> Result<Deployment> {
        self.run_state(ctx, "startDeployment", id, node_id, true)
            .await
    }

    /// Stops a deployment's containers (or one node's); they stay, stopped, until started.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn stop_deployment(
        &self,
        ctx: &Context<'_>,
        id: String,
        node_id: Option<String>,
    ) -> Result<Deployment> {
        self.run_state(ctx, "stopDeployment", id, node_id, false)
            .await
    }

    /// Restarts a deployment's containers (or one node's).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn restart_deployment(
        &self,
        ctx: &Context<'_>,
        id: String,
        node_id: Option<String>,
    ) -> Result<Deployment> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        let work = state.deployments.restart(&d.id, node_id.as_deref());
        let t = target(&d.name, node_id.as_deref());
        audited(ctx, "restartDeployment", Some(&t), work).await?;
        Ok(Deployment(state.deployments.find(&d.id).await?))
    }

    /// Takes one node out of a deployment (its container is removed) although the target
    /// chooses it, or with `excluded: false` puts it back.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn set_deployment_node_excluded(
        &self,
        ctx: &Context<'_>,
        id: String,
        node_id: String,
        excluded: bool,
    ) -> Result<Deployment> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        let work = state.deployments.set_excluded(&d.id, &node_id, excluded);
        let t = target(&d.name, Some(&node_id));
        audited(ctx, "setDeploymentNodeExcluded", Some(&t), work).await?;
        Ok(Deployment(state.deployments.find(&d.id).await?))
    }

    /// Removes a deployment: its containers are stopped and removed on every node, then it is
    /// gone (`deploymentEvents` says `REMOVED`).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn remove_deployment(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        let work = state.deployments.remove(&d.id);
        audited(ctx, "removeDeployment", Some(&d.name), work).await?;
        Ok(true)
    }

    /// Runs a command (no shell: the program and its arguments) in one node's container and
    /// returns its exit code and output (each cut at 1 MiB). The audit log records the
    /// instance, not the command (arguments can hold secrets). In a container with privileged
    /// settings, admins only.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn exec_in_instance(
        &self,
        ctx: &Context<'_>,
        deployment_id: String,
        node_id: String,
        command: Vec<String>,
        #[graphql(default = 30)] timeout_secs: u32,
    ) -> Result<ExecResult> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&deployment_id).await?;
        let t = target(&d.name, Some(&node_id));
        let work = async {
            if !(1..=600).contains(&timeout_secs) {
                return Err(ApiError::BadRequest("timeoutSecs: 1 to 600".into()));
            }
            // A shell in a privileged container is root on the node: admins only.
            let i = state.deployments.instance(&d.id, &node_id).await?;
            let revision = i
                .observed_revision
                .or(i.desired_revision)
                .unwrap_or(d.target_revision);
            if let Ok(spec) = state.deployments.spec(&d.id, revision).await {
                let one = DeploymentSpec {
                    container: spec::effective(&spec, &node_id),
                    ..Default::default()
                };
                let fields = spec::privileged_fields(&one);
                if !fields.is_empty() && principal(ctx)?.role < Role::Admin {
                    return Err(ApiError::Forbidden(format!(
                        "only an admin may run commands in a container with {}",
                        fields.join(", ")
                    )));
                }
            }
            let (engine, container) = state
                .deployments
                .instance_container(&state.docker, &d.id, &node_id)
                .await?;
            live::exec(
                &engine,
                &container,
                command.clone(),
                Duration::from_secs(u64::from(timeout_secs)),
            )
            .await
        };
        audited(ctx, "execInInstance", Some(&t), work).await
    }
}

impl DeploymentMutation {
    async fn run_state(
        &self,
        ctx: &Context<'_>,
        action: &str,
        id: String,
        node_id: Option<String>,
        run: bool,
    ) -> Result<Deployment> {
        let state = ctx.data::<AppState>()?;
        let d = state.deployments.find(&id).await?;
        let work = state
            .deployments
            .set_running(&d.id, node_id.as_deref(), run);
        let t = target(&d.name, node_id.as_deref());
        audited(ctx, action, Some(&t), work).await?;
        Ok(Deployment(state.deployments.find(&d.id).await?))
    }
}
