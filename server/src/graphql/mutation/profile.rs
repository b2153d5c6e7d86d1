//! Experiment profile mutations: store and delete profiles, start one on an experiment, pause,
//! resume and stop a run. Operators act; every one is in the audit log.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::{Principal, Role},
    graphql::{
        guard::{RoleGuard, audited},
        types::{ProfileRun, StoredProfile},
    },
};

/// Profile mutations.
#[derive(Default)]
pub struct ProfileMutation;

fn actor(ctx: &Context<'_>) -> String {
    ctx.data_opt::<Principal>()
        .map(Principal::actor)
        .unwrap_or_default()
}

#[Object]
impl ProfileMutation {
    /// Stores a profile (YAML, Pioreactor's experiment profile format) under its
    /// `experiment_profile_name`, replacing one of that name. One that does not read is
    /// `BAD_REQUEST` listing every problem with its line and column (`checkProfile` gives them one
    /// by one, with the dry run).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn save_profile(&self, ctx: &Context<'_>, source: String) -> Result<StoredProfile> {
        let state = ctx.data::<AppState>()?;
        let actor = actor(ctx);
        let work = state.profiles.save(&source, &actor);
        Ok(audited(ctx, "saveProfile", None, work).await?.into())
    }

    /// Deletes a stored profile (runs keep their copy).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn delete_profile(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let work = state.profiles.delete(&name);
        audited(ctx, "deleteProfile", Some(&name), work).await?;
        Ok(true)
    }

    /// Starts stored profile `name` on a running experiment, its clock running `timeScale` times
    /// real time (3600: a profile hour each second, beside a sped-up simulator). A profile that
    /// cannot run there is `BAD_REQUEST` listing every problem.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn start_profile(
        &self,
        ctx: &Context<'_>,
        experiment_id: String,
        name: String,
        #[graphql(default = 1.0)] time_scale: f64,
    ) -> Result<ProfileRun> {
        let state = ctx.data::<AppState>()?;
        let target = state.experiments.find(&experiment_id).await?.name;
        let actor = actor(ctx);
        let work = state
            .profiles
            .start(&experiment_id, &name, time_scale, &actor);
        let run = audited(ctx, "startProfile", Some(&target), work).await?;
        Ok(state.profiles.run(&run.id).await?.into())
    }

    /// Pauses a profile run: its clock stops; jobs keep running as they are.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn pause_profile_run(&self, ctx: &Context<'_>, id: String) -> Result<ProfileRun> {
        self.control(ctx, "pauseProfileRun", id).await
    }

    /// Resumes a paused profile run where its clock stopped.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn resume_profile_run(&self, ctx: &Context<'_>, id: String) -> Result<ProfileRun> {
        self.control(ctx, "resumeProfileRun", id).await
    }

    /// Stops a profile run for good; jobs keep running as they are.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn stop_profile_run(&self, ctx: &Context<'_>, id: String) -> Result<ProfileRun> {
        self.control(ctx, "stopProfileRun", id).await
    }
}

impl ProfileMutation {
    async fn control(&self, ctx: &Context<'_>, action: &str, id: String) -> Result<ProfileRun> {
        let state = ctx.data::<AppState>()?;
        let run = state.profiles.run(&id).await?;
        let target = state
            .experiments
            .get(&run.run.experiment_id)
            .await?
            .map(|e| e.name);
        let work = async {
            match action {
                "pauseProfileRun" => state.profiles.pause(&id).await,
                "resumeProfileRun" => state.profiles.resume(&id).await,
                _ => state.profiles.stop(&id).await,
            }
        };
        let row = audited(ctx, action, target.as_deref(), work).await?;
        Ok(state.profiles.run(&row.id).await?.into())
    }
}
