//! Job mutations: start, stop, pause, resume, and change settings, each sent to the node's agent
//! and answered once the agent's status shows the change. Operators act; every action is in the
//! audit log with the job (`node/name`) as its target.

use async_graphql::{Context, InputObject, Json, Object, Result, SimpleObject};
use trellis_proto::Settings;

use crate::{
    AppState,
    access::{Principal, Role},
    error::ApiError,
    graphql::{
        guard::{RoleGuard, audited},
        types::{Job, NodeView},
    },
    jobs::{Caller, Start},
};

/// Job mutations.
#[derive(Default)]
pub struct JobMutation;

/// Which nodes a job starts on: the listed ids, every node carrying all the given labels, or all
/// online nodes. The sets add up.
#[derive(InputObject, Default)]
pub struct NodeSelector {
    /// These nodes.
    #[graphql(default)]
    pub node_ids: Vec<String>,
    /// Every node whose labels include all of these (`key` = `value`).
    #[graphql(default)]
    pub labels: Vec<super::node::LabelInput>,
    /// Every node online now.
    #[graphql(default)]
    pub all_online: bool,
}

/// What a start did on one node.
#[derive(SimpleObject)]
pub struct JobStartResult {
    /// The node.
    pub node_id: String,
    /// The job, when it started.
    pub job: Option<Job>,
    /// Why not, in words, when it did not.
    pub error: Option<String>,
    /// The error's code (`BAD_REQUEST`, `UNAVAILABLE`, ...), when it did not.
    pub code: Option<String>,
}

/// Who calls, for the jobs service: the audit actor and whether they are an admin.
fn caller(ctx: &Context<'_>) -> Caller {
    let principal = ctx.data_opt::<Principal>();
    Caller {
        actor: principal.map(Principal::actor).unwrap_or_default(),
        admin: principal.is_some_and(|p| p.role == Role::Admin),
    }
}

/// The ids `selector` names, sorted, each once; `NOT_FOUND` for a listed id that is no node.
async fn select(state: &AppState, selector: &NodeSelector) -> Result<Vec<String>, ApiError> {
    let nodes = state.nodes.list().await?;
    let mut ids = std::collections::BTreeSet::new();
    for id in &selector.node_ids {
        if !nodes.iter().any(|n| &n.id == id) {
            return Err(ApiError::NotFound(format!("node {id:?}")));
        }
        ids.insert(id.clone());
    }
    for n in &nodes {
        let labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(n.labels.clone()).map_err(|e| {
                ApiError::Internal(format!("stored labels of {:?} do not decode: {e}", n.id))
            })?;
        let has_labels = !selector.labels.is_empty()
            && selector
                .labels
                .iter()
                .all(|l| labels.get(&l.key) == Some(&l.value));
        let online = selector.all_online && n.state == trellis_proto::NodeState::Online.as_str();
        if has_labels || online {
            ids.insert(n.id.clone());
        }
    }
    Ok(ids.into_iter().collect())
}

fn target(node_id: &str, name: &str) -> String {
    format!("{node_id}/{name}")
}

fn job(row: entity::job::Model) -> Job {
    Job {
        row,
        node: NodeView::Online,
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
        let caller = caller(ctx);
        let settings = settings.map(|s| s.0).unwrap_or_default();
        let what = Start::from_args(kind, preset)?;
        let shown = target(&node_id, name.as_deref().unwrap_or(what.name()));
        let work = state.jobs.start(
            &state.bridge,
            &node_id,
            &what,
            name.as_deref(),
            &settings,
            &caller,
        );
        Ok(job(audited(ctx, "startJob", Some(&shown), work).await?))
    }

    /// Starts the same job on every node `nodes` selects (ids, labels, all online), at once, each
    /// as `startJob` would; returns one result per node, with that node's error when it refused
    /// or could not be reached. A selector that names no node is `BAD_REQUEST`.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn start_jobs(
        &self,
        ctx: &Context<'_>,
        nodes: NodeSelector,
        kind: Option<String>,
        preset: Option<String>,
        name: Option<String>,
        settings: Option<Json<Settings>>,
    ) -> Result<Vec<JobStartResult>> {
        let state = ctx.data::<AppState>()?;
        let caller = caller(ctx);
        let settings = settings.map(|s| s.0).unwrap_or_default();
        let what = Start::from_args(kind, preset)?;
        let ids = select(state, &nodes).await?;
        if ids.is_empty() {
            return Err(ApiError::BadRequest("the selector names no node".into()).into());
        }
        let starts = ids.iter().map(|id| {
            state.jobs.start(
                &state.bridge,
                id,
                &what,
                name.as_deref(),
                &settings,
                &caller,
            )
        });
        let outcomes = futures::future::join_all(starts).await;
        let mut results = Vec::new();
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            let shown = target(&id, name.as_deref().unwrap_or(what.name()));
            let (code, detail) = match &outcome {
                Ok(_) => ("ok", None),
                Err(e) => {
                    e.log_if_internal("startJobs");
                    (e.code(), Some(e.public_message()))
                }
            };
            state
                .audit
                .record(&caller.actor, "startJob", Some(&shown), code, detail)
                .await;
            results.push(match outcome {
                Ok(row) => JobStartResult {
                    node_id: id,
                    job: Some(job(row)),
                    error: None,
                    code: None,
                },
                Err(e) => JobStartResult {
                    node_id: id,
                    job: None,
                    error: Some(e.public_message()),
                    code: Some(e.code().to_owned()),
                },
            });
        }
        Ok(results)
    }

    /// Stores a preset (new, or replacing one stored before): a name, the kind it starts, one
    /// line for people, and its settings (checked against the kind's rules as a node declares
    /// them). Built-in presets cannot be replaced. An `exec` preset needs an admin.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn save_job_preset(
        &self,
        ctx: &Context<'_>,
        name: String,
        kind: String,
        #[graphql(default)] description: String,
        settings: Option<Json<Settings>>,
    ) -> Result<crate::graphql::types::JobPreset> {
        let state = ctx.data::<AppState>()?;
        let caller = caller(ctx);
        let settings = settings.map(|s| s.0).unwrap_or_default();
        let work = state
            .jobs
            .save_preset(&name, &kind, &description, &settings, &caller);
        Ok(audited(ctx, "saveJobPreset", Some(&name), work)
            .await?
            .into())
    }

    /// Deletes a stored preset (built-in ones stay). Jobs started from it keep running.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn delete_job_preset(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let caller = caller(ctx);
        let work = state.jobs.delete_preset(&name, &caller);
        audited(ctx, "deleteJobPreset", Some(&name), work).await?;
        Ok(true)
    }

    /// Stores the calibration of a dosing pump on a node: which BCM pin switches it and how many
    /// millilitres it moves per second (run it for a known time and weigh what it moved). The
    /// node keeps it per pump; `pulse` by volume, `turbidostat` and `chemostat` use it.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn set_pump_calibration(
        &self,
        ctx: &Context<'_>,
        node_id: String,
        pump: String,
        pin: i32,
        ml_per_second: f64,
    ) -> Result<crate::graphql::types::PumpCalibration> {
        let state = ctx.data::<AppState>()?;
        let shown = format!("{node_id}/{pump}");
        let work = async {
            let pin = u8::try_from(pin)
                .map_err(|_| ApiError::BadRequest(format!("pin {pin} is not a BCM pin (0-27)")))?;
            let c = trellis_proto::PumpCalibration {
                pump: pump.clone(),
                pin,
                ml_per_second,
            };
            state
                .telemetry
                .set_calibration(&state.bridge, &node_id, c)
                .await
        };
        Ok(audited(ctx, "setPumpCalibration", Some(&shown), work)
            .await?
            .into())
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
