//! Stored profiles and their runs: upload and check, start on an experiment, pause, resume,
//! stop; and the scheduler, the loop that runs each running profile's actions when they fall due.
//!
//! The scheduler owns nothing but its timer and the set of runs it is working on now: each run's
//! state (`profile_run`) and every action instance it began (`profile_step`, written before the
//! action runs) are in the database, so the leader can be killed at any point and started again.
//! The rules after a restart: an action that was due while the leader was down runs when it
//! comes back, once, in time order; of a repeat, only its latest occurrence runs (the missed ones
//! are not caught up); an action that had begun when the leader died is not run again (its step
//! says it was interrupted), so nothing is done twice. Pausing stops the profile's clock;
//! resuming starts it where it was.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use entity::{job, profile, profile_run, profile_step};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, SqlErr,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use trellis_proto::Settings;

use super::{
    expr::{self, Builtin, Scope},
    parse::{self, ActionKind, OptionValue, Piece, Profile, ProfileError},
    plan::{self, Cluster, Due, NodeInfo, Progress},
};
use crate::{
    error::{ApiError, ApiResult},
    experiments::Experiments,
    jobs::{Caller, Jobs, Start},
    mqtt::bridge::Bridge,
    nodes::Nodes,
};

/// How often the scheduler looks at the running profiles.
pub const TICK: Duration = Duration::from_millis(200);
/// Highest time scale (profile hours per real hour).
pub const MAX_TIME_SCALE: f64 = 1_000_000.0;

/// A run's state.
pub mod state {
    /// Its actions run as they fall due.
    pub const RUNNING: &str = "running";
    /// Its clock is stopped.
    pub const PAUSED: &str = "paused";
    /// Stopped by someone before the end.
    pub const STOPPED: &str = "stopped";
    /// Everything it had to do is done.
    pub const DONE: &str = "done";
    /// Its profile no longer reads (it cannot go on).
    pub const FAILED: &str = "failed";
}

/// A profile checked against the cluster: its problems, and its timeline when it has none.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// The profile's name, when it reads.
    pub name: Option<String>,
    /// Every problem, with its line and column.
    pub errors: Vec<ProfileError>,
    /// The dry run.
    pub timeline: Vec<plan::Entry>,
}

/// A run as shown: the row, where it stands, and what it does next.
#[derive(Debug, Clone)]
pub struct RunView {
    /// The row.
    pub run: profile_run::Model,
    /// Profile hours elapsed.
    pub elapsed_hours: f64,
    /// Actions begun.
    pub begun: usize,
    /// The next action: profile ms, node, job, action type.
    pub next: Option<plan::Next>,
    /// When its last action is due, profile hours; `None` when not known before it runs.
    pub total_hours: Option<f64>,
}

/// The profiles service; cheap to clone.
#[derive(Clone)]
pub struct Profiles {
    db: DatabaseConnection,
    jobs: Jobs,
    nodes: Nodes,
    experiments: Experiments,
    wake: mpsc::Sender<()>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn listing(errors: &[ProfileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Profile ms elapsed in `run` at `now`.
pub fn profile_time(run: &profile_run::Model, now: i64) -> i64 {
    // Stopped while paused: the clock stopped at the pause.
    let until = run.paused_at_ms.or(run.ended_ms).unwrap_or(now);
    let real = (until - run.started_ms - run.paused_total_ms).max(0);
    (real as f64 * run.time_scale) as i64
}

impl Profiles {
    /// The service, and the scheduler to run (with [`Scheduler::run`]).
    pub fn new(
        db: DatabaseConnection,
        jobs: Jobs,
        nodes: Nodes,
        experiments: Experiments,
        bridge: Bridge,
        audit: crate::access::audit::Audit,
    ) -> (Self, Scheduler) {
        let (wake, rx) = mpsc::channel(16);
        let service = Profiles {
            db,
            jobs,
            nodes,
            experiments,
            wake,
        };
        let scheduler = Scheduler {
            service: service.clone(),
            bridge,
            audit,
            rx,
            busy: Arc::new(Mutex::new(BTreeSet::new())),
            swept: false,
        };
        (service, scheduler)
    }

    /// Every stored profile, by name.
    pub async fn list(&self) -> ApiResult<Vec<profile::Model>> {
        Ok(profile::Entity::find()
            .order_by_asc(profile::Column::Name)
            .all(&self.db)
            .await?)
    }

    /// One stored profile.
    pub async fn get(&self, name: &str) -> ApiResult<profile::Model> {
        profile::Entity::find_by_id(name)
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("profile {name:?}")))
    }

    /// Stores a profile under its `experiment_profile_name` (replacing one of that name). It
    /// must read; whether the cluster can run it is checked when it starts (nodes come and go).
    pub async fn save(&self, source: &str, actor: &str) -> ApiResult<profile::Model> {
        let p = parse::parse(source).map_err(|e| {
            ApiError::BadRequest(format!("the profile does not read: {}", listing(&e)))
        })?;
        let name = p.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(
                "experiment_profile_name must be 1 to 100 characters, no control characters".into(),
            ));
        }
        let row = profile::ActiveModel {
            name: Set(name.clone()),
            source: Set(source.replace('\0', "")),
            updated_by: Set(actor.to_owned()),
            updated_ms: Set(now_ms()),
        };
        let saved = match profile::Entity::find_by_id(&name).one(&self.db).await? {
            Some(_) => row.update(&self.db).await?,
            None => row.insert(&self.db).await?,
        };
        Ok(saved)
    }

    /// Deletes a stored profile (its runs keep their own copy).
    pub async fn delete(&self, name: &str) -> ApiResult<()> {
        let gone = profile::Entity::delete_by_id(name).exec(&self.db).await?;
        if gone.rows_affected == 0 {
            return Err(ApiError::NotFound(format!("profile {name:?}")));
        }
        Ok(())
    }

    /// What the checks know of the cluster (with the experiment's nodes, when given).
    pub async fn cluster(&self, experiment_nodes: Option<Vec<String>>) -> ApiResult<Cluster> {
        let mut nodes = Vec::new();
        for n in self.nodes.list().await? {
            let kinds = self.jobs.kinds(&n.id).await.unwrap_or_default();
            nodes.push(NodeInfo {
                id: n.id.clone(),
                name: n.name.clone().unwrap_or_default(),
                kinds,
            });
        }
        let presets = self
            .jobs
            .all_presets()
            .await?
            .into_iter()
            .map(|p| (p.name, p.kind))
            .collect();
        Ok(Cluster {
            nodes,
            presets,
            experiment_nodes,
        })
    }

    async fn experiment_nodes(&self, experiment: &str) -> ApiResult<(String, Vec<String>)> {
        let e = self.experiments.find(experiment).await?;
        let nodes = self
            .experiments
            .members(&e.id, true)
            .await?
            .into_iter()
            .map(|m| m.node_id)
            .collect();
        Ok((e.id, nodes))
    }

    /// Reads and checks a profile (on an experiment's nodes, when given) and lists what it would
    /// do: the web app's validation as you type, and the dry run.
    pub async fn check(&self, source: &str, experiment: Option<&str>) -> ApiResult<Checked> {
        let p = match parse::parse(source) {
            Ok(p) => p,
            Err(errors) => {
                return Ok(Checked {
                    errors,
                    ..Checked::default()
                });
            }
        };
        let nodes = match experiment {
            Some(e) => Some(self.experiment_nodes(e).await?.1),
            None => None,
        };
        let cluster = self.cluster(nodes.clone()).await?;
        let errors = plan::check(&p, &cluster);
        let all: Vec<String> = nodes.unwrap_or_else(|| {
            cluster
                .nodes
                .iter()
                .filter(|n| !n.kinds.is_empty())
                .map(|n| n.id.clone())
                .collect()
        });
        let timeline = plan::timeline(&p, &cluster, &all);
        Ok(Checked {
            name: Some(p.name),
            errors,
            timeline,
        })
    }

    /// Starts stored profile `name` on a running experiment, its clock running `time_scale`
    /// times real time. A profile that does not pass its checks on the experiment's nodes is
    /// `BAD_REQUEST` listing every problem.
    pub async fn start(
        &self,
        experiment: &str,
        name: &str,
        time_scale: f64,
        actor: &str,
    ) -> ApiResult<profile_run::Model> {
        if !(time_scale > 0.0 && time_scale <= MAX_TIME_SCALE) {
            return Err(ApiError::BadRequest(format!(
                "timeScale {time_scale} must be above 0 and at most {MAX_TIME_SCALE}"
            )));
        }
        let stored = self.get(name).await?;
        let e = self.experiments.find(experiment).await?;
        if e.ended_ms.is_some() {
            return Err(ApiError::BadRequest(format!(
                "experiment {:?} has ended",
                e.name
            )));
        }
        let checked = self.check(&stored.source, Some(&e.id)).await?;
        if !checked.errors.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "profile {name:?} cannot run on experiment {:?}: {}",
                e.name,
                listing(&checked.errors)
            )));
        }
        let (_, nodes) = self.experiment_nodes(&e.id).await?;
        let run = profile_run::ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            experiment_id: Set(e.id.clone()),
            profile_name: Set(stored.name.clone()),
            source: Set(stored.source.clone()),
            time_scale: Set(time_scale),
            state: Set(state::RUNNING.into()),
            started_ms: Set(now_ms()),
            paused_at_ms: Set(None),
            paused_total_ms: Set(0),
            ended_ms: Set(None),
            started_by: Set(actor.to_owned()),
            nodes: Set(serde_json::json!(nodes)),
        }
        .insert(&self.db)
        .await?;
        // A full wake-up queue means the scheduler is about to look anyway.
        let _ = self.wake.try_send(());
        Ok(run)
    }

    async fn run_row(&self, id: &str) -> ApiResult<profile_run::Model> {
        profile_run::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("profile run {id:?}")))
    }

    /// Moves run `id` from one of `from` to another state with `change`, only if it is still in
    /// one of `from` when the write happens (a stale request changes nothing).
    async fn transition(
        &self,
        id: &str,
        from: &[&str],
        change: sea_orm::UpdateMany<profile_run::Entity>,
        what: &str,
    ) -> ApiResult<profile_run::Model> {
        let run = self.run_row(id).await?;
        if !from.contains(&run.state.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "the run is {}: it cannot be {what}",
                run.state
            )));
        }
        let done = change
            .filter(profile_run::Column::Id.eq(id))
            .filter(profile_run::Column::State.is_in(from.iter().copied()))
            .exec(&self.db)
            .await?;
        if done.rows_affected == 0 {
            let now = self.run_row(id).await?;
            return Err(ApiError::Conflict(format!(
                "the run became {} meanwhile: it was not {what}",
                now.state
            )));
        }
        let _ = self.wake.try_send(());
        self.run_row(id).await
    }

    /// Pauses a running profile: its clock stops (jobs keep running as they are).
    pub async fn pause(&self, id: &str) -> ApiResult<profile_run::Model> {
        use sea_orm::sea_query::Expr;
        let change = profile_run::Entity::update_many()
            .col_expr(profile_run::Column::State, Expr::value(state::PAUSED))
            .col_expr(profile_run::Column::PausedAtMs, Expr::value(now_ms()));
        self.transition(id, &[state::RUNNING], change, "paused")
            .await
    }

    /// Resumes a paused profile where its clock stopped.
    pub async fn resume(&self, id: &str) -> ApiResult<profile_run::Model> {
        use sea_orm::sea_query::{Expr, ExprTrait};
        let now = now_ms();
        let change = profile_run::Entity::update_many()
            .col_expr(profile_run::Column::State, Expr::value(state::RUNNING))
            .col_expr(
                profile_run::Column::PausedTotalMs,
                Expr::col(profile_run::Column::PausedTotalMs)
                    .add(Expr::value(now).sub(Expr::col(profile_run::Column::PausedAtMs))),
            )
            .col_expr(
                profile_run::Column::PausedAtMs,
                Expr::value(sea_orm::Value::BigInt(None)),
            );
        self.transition(id, &[state::PAUSED], change, "resumed")
            .await
    }

    /// Stops a profile for good (its jobs keep running as they are).
    pub async fn stop(&self, id: &str) -> ApiResult<profile_run::Model> {
        use sea_orm::sea_query::Expr;
        let change = profile_run::Entity::update_many()
            .col_expr(profile_run::Column::State, Expr::value(state::STOPPED))
            .col_expr(profile_run::Column::EndedMs, Expr::value(now_ms()));
        self.transition(id, &[state::RUNNING, state::PAUSED], change, "stopped")
            .await
    }

    /// Stops every run of an experiment (it ended).
    pub async fn stop_all(&self, experiment_id: &str) -> ApiResult<u64> {
        use sea_orm::sea_query::Expr;
        Ok(profile_run::Entity::update_many()
            .col_expr(profile_run::Column::State, Expr::value(state::STOPPED))
            .col_expr(profile_run::Column::EndedMs, Expr::value(now_ms()))
            .filter(profile_run::Column::ExperimentId.eq(experiment_id))
            .filter(profile_run::Column::State.is_in([state::RUNNING, state::PAUSED]))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// The runs of an experiment, newest first.
    pub async fn runs(&self, experiment_id: &str) -> ApiResult<Vec<RunView>> {
        let rows = profile_run::Entity::find()
            .filter(profile_run::Column::ExperimentId.eq(experiment_id))
            .order_by_desc(profile_run::Column::StartedMs)
            .all(&self.db)
            .await?;
        let mut out = Vec::new();
        for run in rows {
            out.push(self.view(run).await?);
        }
        Ok(out)
    }

    /// One run.
    pub async fn run(&self, id: &str) -> ApiResult<RunView> {
        let run = self.run_row(id).await?;
        self.view(run).await
    }

    async fn view(&self, run: profile_run::Model) -> ApiResult<RunView> {
        let t = profile_time(&run, now_ms());
        let progress = self.progress(&run.id).await?;
        let parsed = parse::parse(&run.source).ok();
        let total_hours = parsed.as_ref().and_then(plan::end_hours);
        let next = match (parsed, run.state.as_str()) {
            (Some(p), state::RUNNING | state::PAUSED) => {
                let cluster = self.cluster(None).await?;
                let nodes = run_nodes(&run);
                let targets = plan::targets(&p, &cluster, &nodes);
                plan::next(&targets, t, &progress)
            }
            _ => None,
        };
        Ok(RunView {
            elapsed_hours: t as f64 / 3_600_000.0,
            begun: progress.begun.len(),
            next,
            total_hours,
            run,
        })
    }

    /// Every step of a run, in the order they began.
    pub async fn steps(&self, run_id: &str) -> ApiResult<Vec<profile_step::Model>> {
        Ok(profile_step::Entity::find()
            .filter(profile_step::Column::RunId.eq(run_id))
            .order_by_asc(profile_step::Column::AtMs)
            .order_by_asc(profile_step::Column::DueMs)
            .all(&self.db)
            .await?)
    }

    async fn progress(&self, run_id: &str) -> ApiResult<Progress> {
        let mut p = Progress::default();
        for s in self.steps(run_id).await? {
            if s.action == "when" {
                p.triggered.insert(s.key, s.due_ms);
            } else {
                p.begun.insert(s.key);
            }
        }
        Ok(p)
    }
}

fn run_nodes(run: &profile_run::Model) -> Vec<String> {
    serde_json::from_value(run.nodes.clone()).unwrap_or_default()
}

/// The loop that runs profiles' actions as they fall due.
pub struct Scheduler {
    service: Profiles,
    bridge: Bridge,
    audit: crate::access::audit::Audit,
    rx: mpsc::Receiver<()>,
    busy: Arc<Mutex<BTreeSet<String>>>,
    /// Whether steps a stopped leader left running were marked (once per process: a loop
    /// started again after a panic finds its runs' workers still at work).
    swept: bool,
}

/// What an expression sees while a run's action runs.
struct RunScope<'a> {
    profile: &'a Profile,
    cluster: &'a Cluster,
    labels: HashMap<String, String>,
    jobs: &'a HashMap<(String, String), job::Model>,
    experiment: &'a str,
    node: &'a str,
    job: &'a str,
}

impl Scope for RunScope<'_> {
    fn input(&self, name: &str) -> Option<Value> {
        self.profile.inputs.get(name).cloned()
    }

    fn builtin(&self, b: Builtin) -> Value {
        Value::String(
            match b {
                Builtin::Unit => self.node,
                Builtin::Experiment => self.experiment,
                Builtin::JobName => self.job,
            }
            .to_owned(),
        )
    }

    fn reference(&self, unit: Option<&str>, job: &str, setting: &str) -> Result<Value, String> {
        let node = match unit {
            None => self.node.to_owned(),
            Some(u) => self
                .cluster
                .node(u, &self.labels)
                .map(|n| n.id.clone())
                .ok_or_else(|| format!("unit {u:?} is no node here"))?,
        };
        let row = self
            .jobs
            .get(&(node.clone(), job.to_owned()))
            .ok_or_else(|| format!("node {node:?} has no job {job}"))?;
        let name = plan::setting_name(job, setting);
        row.settings
            .get(name)
            .or_else(|| row.latest_values.as_ref().and_then(|v| v.get(name)))
            .cloned()
            .ok_or_else(|| format!("job {job} on node {node:?} has no setting or value {setting}"))
    }
}

fn render(v: &OptionValue, scope: &dyn Scope) -> Result<Value, String> {
    match v {
        OptionValue::Literal(v) => Ok(v.clone()),
        OptionValue::Template(pieces) => {
            if let [Piece::Expr(e)] = pieces.as_slice() {
                return expr::eval(e, scope).map_err(|e| e.to_string());
            }
            let mut s = String::new();
            for p in pieces {
                match p {
                    Piece::Text(t) => s.push_str(t),
                    Piece::Expr(e) => match expr::eval(e, scope).map_err(|e| e.to_string())? {
                        Value::String(x) => s.push_str(&x),
                        other => s.push_str(&other.to_string()),
                    },
                }
            }
            Ok(Value::String(s))
        }
    }
}

fn settings(
    job: &str,
    options: &[(String, OptionValue, parse::Pos)],
    scope: &dyn Scope,
) -> Result<Settings, String> {
    let mut out = Settings::new();
    for (key, value, _) in options {
        let v = render(value, scope).map_err(|e| format!("option {key}: {e}"))?;
        if let Some((name, v)) = plan::translate(job, key, &v)? {
            out.insert(name, v);
        }
    }
    Ok(out)
}

impl Scheduler {
    /// Runs until `shutdown`: every [`TICK`] (or at once when woken), each running profile's due
    /// actions, one run at a time each (a slow node holds back only its own run).
    ///
    /// Supervised ([`crate::infra::supervise::supervise_owning`]): its wake-ups and busy set
    /// outlive a panic, and a missed wake-up is the next tick's.
    pub async fn run(&mut self, shutdown: CancellationToken) {
        // Steps that had begun when the leader stopped are not run again.
        if !self.swept
            && let Err(e) = profile_step::Entity::update_many()
                .col_expr(
                    profile_step::Column::State,
                    sea_orm::sea_query::Expr::value("failed"),
                )
                .col_expr(
                    profile_step::Column::Outcome,
                    sea_orm::sea_query::Expr::value(
                        "interrupted by a leader restart; not run again",
                    ),
                )
                .filter(profile_step::Column::State.eq("running"))
                .exec(&self.service.db)
                .await
        {
            tracing::warn!(error = %e, "cannot mark interrupted profile steps");
        }
        self.swept = true;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                _ = self.rx.recv() => {}
            }
            let runs = match profile_run::Entity::find()
                .filter(profile_run::Column::State.eq(state::RUNNING))
                .all(&self.service.db)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the running profiles");
                    continue;
                }
            };
            for run in runs {
                let fresh = self
                    .busy
                    .lock()
                    .map(|mut b| b.insert(run.id.clone()))
                    .unwrap_or(false);
                if !fresh {
                    continue;
                }
                let me = Worker {
                    service: self.service.clone(),
                    bridge: self.bridge.clone(),
                    audit: self.audit.clone(),
                };
                let guard = Busy {
                    set: self.busy.clone(),
                    id: run.id.clone(),
                };
                tokio::spawn(async move {
                    // Leaves the busy set however the work ends (a panic included).
                    let _guard = guard;
                    let id = run.id.clone();
                    if let Err(e) = me.advance(run).await {
                        tracing::warn!(
                            run = id,
                            error = e.log_message(),
                            "profile run could not advance"
                        );
                    }
                });
            }
        }
    }
}

/// A run the scheduler works on; dropped, it is free again.
struct Busy {
    set: Arc<Mutex<BTreeSet<String>>>,
    id: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut b) = self.set.lock() {
            b.remove(&self.id);
        }
    }
}

/// Works on one run.
struct Worker {
    service: Profiles,
    bridge: Bridge,
    audit: crate::access::audit::Audit,
}

impl Worker {
    async fn still_running(&self, id: &str) -> ApiResult<bool> {
        Ok(self.service.run_row(id).await?.state == state::RUNNING)
    }

    async fn fail(&self, run: profile_run::Model, why: String) -> ApiResult<()> {
        tracing::error!(run = run.id, why, "profile run failed");
        let mut m = run.into_active_model();
        m.state = Set(state::FAILED.into());
        m.ended_ms = Set(Some(now_ms()));
        m.update(&self.service.db).await?;
        Ok(())
    }

    /// Runs what is due in `run` now, then marks it done if nothing is left.
    async fn advance(&self, run: profile_run::Model) -> ApiResult<()> {
        let p = match parse::parse(&run.source) {
            Ok(p) => p,
            Err(e) => return self.fail(run, listing(&e)).await,
        };
        let experiment = self
            .service
            .experiments
            .get(&run.experiment_id)
            .await?
            .map(|e| e.name)
            .unwrap_or_default();
        let cluster = self.service.cluster(None).await?;
        // Only nodes still in the experiment: one that left (or moved) is not acted on.
        let members: BTreeSet<String> = self
            .service
            .experiments
            .members(&run.experiment_id, true)
            .await?
            .into_iter()
            .map(|m| m.node_id)
            .collect();
        let nodes: Vec<String> = run_nodes(&run)
            .into_iter()
            .filter(|n| members.contains(n))
            .collect();
        let targets: Vec<_> = plan::targets(&p, &cluster, &nodes)
            .into_iter()
            .filter(|(n, _, _)| members.contains(n))
            .collect();
        let t = profile_time(&run, now_ms());
        let mut progress = self.service.progress(&run.id).await?;
        let due = plan::due(&targets, t, &progress);
        if !due.is_empty() {
            let jobs: HashMap<(String, String), job::Model> = self
                .service
                .jobs
                .list(None)
                .await?
                .into_iter()
                .map(|j| ((j.node_id.clone(), j.name.clone()), j))
                .collect();
            let actor = format!("profile:{}", run.profile_name);
            for d in due {
                // A pause or stop between two actions holds the rest back.
                if !self.still_running(&run.id).await? {
                    return Ok(());
                }
                match d {
                    Due::Check {
                        key,
                        node_id,
                        job,
                        condition,
                    } => {
                        let scope = RunScope {
                            profile: &p,
                            cluster: &cluster,
                            labels: plan::labels(&p),
                            jobs: &jobs,
                            experiment: &experiment,
                            node: &node_id,
                            job: &job,
                        };
                        // A condition that cannot be read yet (its job not started) waits.
                        if expr::holds(condition, &scope).unwrap_or(false) {
                            self.record(
                                &run.id,
                                &key,
                                t,
                                &node_id,
                                &job,
                                "when",
                                "done",
                                "its condition held",
                            )
                            .await?;
                            progress.triggered.insert(key, t);
                        }
                    }
                    Due::Run {
                        key,
                        due_ms,
                        node_id,
                        job,
                        action,
                    } => {
                        let name = action.kind.name();
                        // Written before it runs: a leader that dies now does not run it again.
                        if !self
                            .record(&run.id, &key, due_ms, &node_id, &job, name, "running", "")
                            .await?
                        {
                            continue;
                        }
                        let scope = RunScope {
                            profile: &p,
                            cluster: &cluster,
                            labels: plan::labels(&p),
                            jobs: &jobs,
                            experiment: &experiment,
                            node: &node_id,
                            job: &job,
                        };
                        let (st, outcome) = match &action.only_if {
                            Some(c) => match expr::holds(c, &scope) {
                                Ok(true) => {
                                    self.act(
                                        &run,
                                        &cluster,
                                        &node_id,
                                        &job,
                                        &action.kind,
                                        &scope,
                                        &actor,
                                    )
                                    .await
                                }
                                Ok(false) => ("skipped", "its if did not hold".to_owned()),
                                Err(e) => ("failed", format!("its if cannot be read: {e}")),
                            },
                            None => {
                                self.act(
                                    &run,
                                    &cluster,
                                    &node_id,
                                    &job,
                                    &action.kind,
                                    &scope,
                                    &actor,
                                )
                                .await
                            }
                        };
                        self.finish(&run.id, &key, st, &outcome).await?;
                        progress.begun.insert(key);
                    }
                }
            }
        }
        if plan::finished(&targets, &progress) {
            use sea_orm::sea_query::Expr;
            // Only a run still running finishes (not one stopped or paused meanwhile).
            profile_run::Entity::update_many()
                .col_expr(profile_run::Column::State, Expr::value(state::DONE))
                .col_expr(profile_run::Column::EndedMs, Expr::value(now_ms()))
                .filter(profile_run::Column::Id.eq(run.id.as_str()))
                .filter(profile_run::Column::State.eq(state::RUNNING))
                .exec(&self.service.db)
                .await?;
        }
        Ok(())
    }

    /// Runs one action; returns its step's state and outcome in words. Each is in the audit log
    /// with the profile as actor and `node/job` as target, so it shows among the experiment's
    /// events.
    // Each argument is part of the action's context.
    #[allow(clippy::too_many_arguments)]
    async fn act(
        &self,
        run: &profile_run::Model,
        cluster: &Cluster,
        node: &str,
        job: &str,
        kind: &ActionKind,
        scope: &RunScope<'_>,
        actor: &str,
    ) -> (&'static str, String) {
        let jobs = &self.service.jobs;
        let b = &self.bridge;
        let result: Result<String, String> = match kind {
            ActionKind::Start(o) => match settings(job, o, scope) {
                Ok(s) => {
                    let what = if cluster.presets.contains_key(job) {
                        Start::Preset(job.to_owned())
                    } else {
                        Start::Kind(job.to_owned())
                    };
                    let caller = Caller {
                        actor: actor.to_owned(),
                        admin: false,
                    };
                    jobs.start(b, node, &what, None, &s, &caller)
                        .await
                        .map(|j| format!("started ({})", j.state))
                        .map_err(|e| e.public_message())
                }
                Err(e) => Err(e),
            },
            ActionKind::Update(o) => match settings(job, o, scope) {
                Ok(s) => jobs
                    .set(b, node, job, &s)
                    .await
                    .map(|_| format!("set {}", serde_json::to_string(&s).unwrap_or_default()))
                    .map_err(|e| e.public_message()),
                Err(e) => Err(e),
            },
            ActionKind::Stop => jobs
                .stop(b, node, job)
                .await
                .map(|_| "stopped".into())
                .map_err(|e| e.public_message()),
            ActionKind::Pause => jobs
                .pause(b, node, job)
                .await
                .map(|_| "paused".into())
                .map_err(|e| e.public_message()),
            ActionKind::Resume => jobs
                .resume(b, node, job)
                .await
                .map(|_| "resumed".into())
                .map_err(|e| e.public_message()),
            ActionKind::Log(m) => match render(m, scope) {
                Ok(v) => {
                    let text = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    self.service
                        .experiments
                        .annotate(&run.experiment_id, &format!("{node}/{job}: {text}"), actor)
                        .await
                        .map(|_| format!("noted: {text}"))
                        .map_err(|e| e.public_message())
                }
                Err(e) => Err(e),
            },
            // Repeat and when are walked, not run.
            ActionKind::Repeat { .. } | ActionKind::When { .. } => Ok(String::new()),
        };
        let target = format!("{node}/{job}");
        let (outcome, detail) = match &result {
            Ok(_) => ("ok", None),
            Err(e) => ("BAD_REQUEST", Some(e.clone())),
        };
        if !matches!(kind, ActionKind::Log(_)) {
            let action = format!("profile:{}", kind.name());
            self.audit
                .record(actor, &action, Some(&target), outcome, detail)
                .await;
        }
        match result {
            Ok(s) => ("done", s),
            Err(e) => ("failed", e),
        }
    }

    /// Writes a step; `false` when it was written before (someone else began it).
    // Each argument is one column of the step.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        run_id: &str,
        key: &str,
        due_ms: i64,
        node: &str,
        job: &str,
        action: &str,
        st: &str,
        outcome: &str,
    ) -> ApiResult<bool> {
        let row = profile_step::ActiveModel {
            run_id: Set(run_id.to_owned()),
            key: Set(key.to_owned()),
            due_ms: Set(due_ms),
            node_id: Set(node.to_owned()),
            job: Set(job.to_owned()),
            action: Set(action.to_owned()),
            state: Set(st.to_owned()),
            outcome: Set(outcome.to_owned()),
            at_ms: Set(now_ms()),
        };
        match row.insert(&self.service.db).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn finish(&self, run_id: &str, key: &str, st: &str, outcome: &str) -> ApiResult<()> {
        profile_step::Entity::update_many()
            .col_expr(
                profile_step::Column::State,
                sea_orm::sea_query::Expr::value(st),
            )
            .col_expr(
                profile_step::Column::Outcome,
                sea_orm::sea_query::Expr::value(outcome.replace('\0', "")),
            )
            .col_expr(
                profile_step::Column::AtMs,
                sea_orm::sea_query::Expr::value(now_ms()),
            )
            .filter(profile_step::Column::RunId.eq(run_id))
            .filter(profile_step::Column::Key.eq(key))
            .exec(&self.service.db)
            .await?;
        Ok(())
    }
}
