//! Experiment mutations: create, rename, describe, annotate, end, and move nodes in and out.
//! Operators act; every one is in the audit log with the experiment's name as its target.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::{Principal, Role},
    graphql::{
        guard::{RoleGuard, audited},
        types::{Experiment, ExperimentNote},
    },
};

/// Experiment mutations.
#[derive(Default)]
pub struct ExperimentMutation;

fn actor(ctx: &Context<'_>) -> String {
    ctx.data_opt::<Principal>()
        .map(Principal::actor)
        .unwrap_or_default()
}

#[Object]
impl ExperimentMutation {
    /// Creates a running experiment named `name` (unique; `CONFLICT` when taken) with `nodeIds`
    /// in it. A node in another running experiment is `CONFLICT` unless `moveNodes` is true,
    /// which moves it (its running jobs move with it).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn create_experiment(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(default)] description: String,
        #[graphql(default)] node_ids: Vec<String>,
        #[graphql(default)] move_nodes: bool,
    ) -> Result<Experiment> {
        let state = ctx.data::<AppState>()?;
        let actor = actor(ctx);
        let work = state
            .experiments
            .create(&name, &description, &node_ids, move_nodes, &actor);
        Ok(Experiment(
            audited(ctx, "createExperiment", Some(name.trim()), work).await?,
        ))
    }

    /// Renames an experiment (by id or name).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn rename_experiment(
        &self,
        ctx: &Context<'_>,
        id: String,
        name: String,
    ) -> Result<Experiment> {
        let state = ctx.data::<AppState>()?;
        let work = state.experiments.rename(&id, &name);
        Ok(Experiment(
            audited(ctx, "renameExperiment", Some(name.trim()), work).await?,
        ))
    }

    /// Replaces an experiment's description.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn describe_experiment(
        &self,
        ctx: &Context<'_>,
        id: String,
        description: String,
    ) -> Result<Experiment> {
        let state = ctx.data::<AppState>()?;
        let target = state.experiments.find(&id).await?.name;
        let work = state.experiments.describe(&id, &description);
        Ok(Experiment(
            audited(ctx, "describeExperiment", Some(&target), work).await?,
        ))
    }

    /// Adds a note to an experiment, stamped now with who wrote it.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn annotate_experiment(
        &self,
        ctx: &Context<'_>,
        id: String,
        text: String,
    ) -> Result<ExperimentNote> {
        let state = ctx.data::<AppState>()?;
        let target = state.experiments.find(&id).await?.name;
        let actor = actor(ctx);
        let work = state.experiments.annotate(&id, &text, &actor);
        Ok(audited(ctx, "annotateExperiment", Some(&target), work)
            .await?
            .into())
    }

    /// Ends a running experiment: its nodes leave it (their jobs keep running, in no
    /// experiment) and its profile runs stop.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn end_experiment(&self, ctx: &Context<'_>, id: String) -> Result<Experiment> {
        let state = ctx.data::<AppState>()?;
        let target = state.experiments.find(&id).await?.name;
        let actor = actor(ctx);
        let work = async {
            let e = state.experiments.end(&id, &actor).await?;
            // Its profiles stop with it.
            state.profiles.stop_all(&e.id).await?;
            Ok(e)
        };
        Ok(Experiment(
            audited(ctx, "endExperiment", Some(&target), work).await?,
        ))
    }

    /// Adds nodes to a running experiment; a node in another running experiment is `CONFLICT`
    /// unless `moveNodes` is true.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn add_experiment_nodes(
        &self,
        ctx: &Context<'_>,
        id: String,
        node_ids: Vec<String>,
        #[graphql(default)] move_nodes: bool,
    ) -> Result<Experiment> {
        let state = ctx.data::<AppState>()?;
        let target = state.experiments.find(&id).await?.name;
        let actor = actor(ctx);
        let work = state
            .experiments
            .add_nodes(&id, &node_ids, move_nodes, &actor);
        Ok(Experiment(
            audited(ctx, "addExperimentNodes", Some(&target), work).await?,
        ))
    }

    /// Takes nodes out of an experiment; their running jobs keep running, in no experiment.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn remove_experiment_nodes(
        &self,
        ctx: &Context<'_>,
        id: String,
        node_ids: Vec<String>,
    ) -> Result<Experiment> {
        let state = ctx.data::<AppState>()?;
        let target = state.experiments.find(&id).await?.name;
        let work = state.experiments.remove_nodes(&id, &node_ids);
        Ok(Experiment(
            audited(ctx, "removeExperimentNodes", Some(&target), work).await?,
        ))
    }
}
