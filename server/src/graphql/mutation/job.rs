//! Job mutations: start, stop, pause, resume, and change settings, each sent to the node's agent
//! and answered once the agent's status shows the change. Operators act; every action is in the
//! audit log with the job (`node/name`) as its target.

use async_graphql::{Context, Json, Object, Result};
use trellis_proto::Settings;

use crate::{
    AppState,
    access::{Principal, Role},
    error::ApiError,
    graphql::{
        guard::{RoleGuard, audited},
        types::Job,
    },
    jobs::Start,
};

/// Job mutations.
#[derive(Default)]
pub struct JobMutation;

fn target(node_id: &str, name: &str) -> String {
    format!("{node_id}/{name}")
}

fn job(row: entity::job::Model) -> Job {
    Job {
        row,
        node_lost: false,
    }
}

#[Object]
impl JobMutation {
    /// Starts a job on a node: of `kind`, or from `preset` (one of the two), named `name` (the
    /// kind's or preset's name when absent), with `settings` (a JSON object of setting name →
    /// value, over the preset's; the kind's defaults for the rest). Returns the job once it runs.
    /// `BAD_REQUEST` names what was wrong: an unknown kind, preset or setting, a value outside its
    /// rule, a name taken by a running job, a job that failed at start.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn start_job(
        &self,
        ctx: &Context<'_>,
        node_id: String,
        kind: Option<String>,
        preset: Option<String>,
        name: Option<String>,
        settings: Option<Json<Settings>>,
    ) -> Result<Job> {
        let state = ctx.data::<AppState>()?;
        let actor = ctx
            .data_opt::<Principal>()
            .map(Principal::actor)
            .unwrap_or_default();
        let settings = settings.map(|s| s.0).unwrap_or_default();
        let what = match (kind, preset) {
            (Some(k), None) => Start::Kind(k),
            (None, Some(p)) => Start::Preset(p),
            _ => {
                return Err(ApiError::BadRequest(
                    "name a kind or a preset to start (one of the two)".into(),
                )
                .into());
            }
        };
        let default_name = match &what {
            Start::Kind(k) | Start::Preset(k) => k.clone(),
        };
        let shown = target(&node_id, name.as_deref().unwrap_or(&default_name));
        let work = state.jobs.start(
            &state.bridge,
            &node_id,
            &what,
            name.as_deref(),
            &settings,
            &actor,
        );
        Ok(job(audited(ctx, "startJob", Some(&shown), work).await?))
    }

    /// Stops a job: its hardware is released (PWM to 0, outputs low) before it says `STOPPED`.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn stop_job(&self, ctx: &Context<'_>, node_id: String, name: String) -> Result<Job> {
        let state = ctx.data::<AppState>()?;
        let work = state.jobs.stop(&state.bridge, &node_id, &name);
        Ok(job(audited(
            ctx,
            "stopJob",
            Some(&target(&node_id, &name)),
            work,
        )
        .await?))
    }

    /// Pauses a job: hardware released, settings kept (`SLEEPING`).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn pause_job(&self, ctx: &Context<'_>, node_id: String, name: String) -> Result<Job> {
        let state = ctx.data::<AppState>()?;
        let work = state.jobs.pause(&state.bridge, &node_id, &name);
        Ok(job(audited(
            ctx,
            "pauseJob",
            Some(&target(&node_id, &name)),
            work,
        )
        .await?))
    }

    /// Resumes a paused job.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn resume_job(&self, ctx: &Context<'_>, node_id: String, name: String) -> Result<Job> {
        let state = ctx.data::<AppState>()?;
        let work = state.jobs.resume(&state.bridge, &node_id, &name);
        Ok(job(audited(
            ctx,
            "resumeJob",
            Some(&target(&node_id, &name)),
            work,
        )
        .await?))
    }

    /// Changes settings of a running job (a JSON object of setting name → value), all or nothing.
    /// Returns the job once its agent echoes the new values. A refused value changes nothing; the
    /// error names the setting, the value and the rule.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn set_job_settings(
        &self,
        ctx: &Context<'_>,
        node_id: String,
        name: String,
        settings: Json<Settings>,
    ) -> Result<Job> {
        let state = ctx.data::<AppState>()?;
        let work = state.jobs.set(&state.bridge, &node_id, &name, &settings.0);
        Ok(job(audited(
            ctx,
            "setJobSettings",
            Some(&target(&node_id, &name)),
            work,
        )
        .await?))
    }
}
