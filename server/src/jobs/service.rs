//! The jobs service: every read and write of the `job` table and of the kinds each node offers,
//! the events those writes emit, and the job actions (start, stop, pause, resume, set), sent to the
//! node's agent as commands through the bridge. A setting is checked here with the same rules the
//! agent applies (`trellis_proto::KindSpec`), so a bad value is refused before anything is sent;
//! the agent checks again, and its refusal reaches the caller in its own words.
//!
//! An action returns once the agent's status shows it took effect (or the job failed), so a
//! script that starts a job and then reads it sees it running.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{job, job_preset, node};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
};
use tokio::sync::broadcast;
use trellis_proto::{Action, JobKinds, JobState, JobStatus, KindSpec, Settings};

use super::presets::Preset;
use crate::{
    error::{ApiError, ApiResult},
    mqtt::bridge::{Bridge, CommandError},
};

/// How long an action waits for the node to answer its command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an action waits, after the node took the command, for the job's status to show it.
pub const EFFECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most jobs the leader records for one node (an agent runs at most 64 at once and keeps 32
/// ended ones): a node cannot make the leader store without bound.
pub const MAX_JOBS_PER_NODE: usize = 256;
/// Most settings or values one job status may carry.
pub const MAX_STATUS_ENTRIES: usize = 128;
/// Longest failure reason kept, characters.
pub const MAX_ERROR_LEN: usize = 4096;
/// Capacity of the event channel; a subscriber further behind than this gets a `RESYNC`.
pub const EVENT_CAPACITY: usize = 1024;

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum JobEventKind {
    /// Its status changed (state or settings).
    Updated,
    /// It is gone from its node (its retained status was cleared, or the node was removed).
    Removed,
    /// The subscriber fell behind and missed events: reload `jobs`.
    Resync,
}

/// An event for subscribers, with the job as it is after the change (`None` once removed).
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// What happened.
    pub kind: JobEventKind,
    /// The node.
    pub node_id: String,
    /// The job's name.
    pub name: String,
    /// The job after the change.
    pub job: Option<job::Model>,
}

/// What a start names: a kind, or a preset (a kind with settings).
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// A kind (`pwm`).
    Kind(String),
    /// A preset (`stirring`).
    Preset(String),
}

impl Start {
    /// The start named by a request's `kind` and `preset` arguments: exactly one of the two.
    pub fn from_args(kind: Option<String>, preset: Option<String>) -> ApiResult<Start> {
        match (kind, preset) {
            (Some(k), None) => Ok(Start::Kind(k)),
            (None, Some(p)) => Ok(Start::Preset(p)),
            _ => Err(ApiError::BadRequest(
                "name a kind or a preset to start (one of the two)".into(),
            )),
        }
    }

    /// The kind's or preset's name: the job's name when the start gives none.
    pub fn name(&self) -> &str {
        match self {
            Start::Kind(n) | Start::Preset(n) => n,
        }
    }
}

/// Who acts, for the record and for the one rule about `exec`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The audit actor.
    pub actor: String,
    /// Whether the caller is an admin.
    pub admin: bool,
}

impl Caller {
    /// An `exec` job runs any program on its node as the agent's user, the leader's own node
    /// included (where that user can read the leader's data): only admins may start one, or
    /// store, replace or delete a preset of one.
    fn may_use(&self, kind: &str) -> ApiResult<()> {
        if kind == "exec" && !self.admin {
            return Err(ApiError::Forbidden(
                "an exec job runs a program on the node: only admins may start one or manage its presets"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The jobs service.
#[derive(Clone)]
pub struct Jobs {
    db: DatabaseConnection,
    events: broadcast::Sender<JobEvent>,
}

impl Jobs {
    /// A service over `db`. Actions take the bridge they command agents through (the bridge's
    /// router records what agents report here, so the bridge is made after this service).
    pub fn new(db: DatabaseConnection) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Jobs { db, events }
    }

    /// A receiver of every job event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    fn emit(&self, kind: JobEventKind, node_id: &str, name: &str, job: Option<job::Model>) {
        // No subscribers is fine: send only fails when nobody listens.
        let _ = self.events.send(JobEvent {
            kind,
            node_id: node_id.to_owned(),
            name: name.to_owned(),
            job,
        });
    }

    /// Records a job status an agent published.
    pub async fn record(
        &self,
        node_id: &str,
        status: &JobStatus,
        now: DateTime<Utc>,
    ) -> ApiResult<Option<job::Model>> {
        // What a node reports is untrusted input: bounded before it is stored or broadcast.
        if status.settings.len() > MAX_STATUS_ENTRIES || status.values.len() > MAX_STATUS_ENTRIES {
            tracing::warn!(
                node_id,
                job = status.name,
                "job status with more than {MAX_STATUS_ENTRIES} settings or values dropped"
            );
            return Ok(None);
        }
        if node::Entity::find_by_id(node_id.to_owned())
            .one(&self.db)
            .await?
            .is_none()
        {
            // A removed node's statuses still in flight, or a node not announced yet: its agent
            // publishes every job again after it (re)connects.
            return Ok(None);
        }
        let error = status.error.as_ref().map(|e| {
            // Postgres text refuses NUL; a node's words are kept readable and short.
            e.replace('\0', "")
                .chars()
                .take(MAX_ERROR_LEN)
                .collect::<String>()
        });
        let settings = serde_json::to_value(&status.settings).map_err(|e| {
            ApiError::Internal(format!("cannot store the settings of {}: {e}", status.name))
        })?;
        let values = (!status.values.is_empty())
            .then(|| serde_json::to_value(&status.values))
            .transpose()
            .map_err(|e| {
                ApiError::Internal(format!("cannot store the values of {}: {e}", status.name))
            })?;
        let existing = job::Entity::find_by_id((node_id.to_owned(), status.name.clone()))
            .one(&self.db)
            .await?;
        let row = match existing {
            Some(row) => {
                // A new start of the job takes its node's experiment now.
                let restarted = row.start_id != status.start;
                let mut m = row.into_active_model();
                if restarted {
                    m.experiment_id =
                        Set(crate::experiments::service::current(&self.db, node_id).await?);
                }
                m.kind = Set(status.kind.clone());
                m.settings = Set(settings);
                m.state = Set(status.state.as_str().to_owned());
                m.error = Set(error);
                m.latest_values = Set(values);
                m.start_id = Set(status.start.clone());
                m.updated_at = Set(now);
                m.update(&self.db).await?
            }
            None => {
                let known = job::Entity::find()
                    .filter(job::Column::NodeId.eq(node_id))
                    .count(&self.db)
                    .await?;
                if usize::try_from(known).unwrap_or(usize::MAX) >= MAX_JOBS_PER_NODE {
                    tracing::warn!(
                        node_id,
                        job = status.name,
                        "node reports more than {MAX_JOBS_PER_NODE} jobs: this one is not recorded"
                    );
                    return Ok(None);
                }
                job::ActiveModel {
                    experiment_id: Set(
                        crate::experiments::service::current(&self.db, node_id).await?
                    ),
                    logs_dropped: Set(0),
                    start_id: Set(status.start.clone()),
                    node_id: Set(node_id.to_owned()),
                    name: Set(status.name.clone()),
                    kind: Set(status.kind.clone()),
                    settings: Set(settings),
                    state: Set(status.state.as_str().to_owned()),
                    error: Set(error),
                    latest_values: Set(values),
                    started_by: Set(None),
                    updated_at: Set(now),
                }
                .insert(&self.db)
                .await?
            }
        };
        self.emit(
            JobEventKind::Updated,
            node_id,
            &status.name,
            Some(row.clone()),
        );
        Ok(Some(row))
    }

    /// Moves the running jobs of `node_id` into `experiment_id` (its node joined or left an
    /// experiment); stopped and failed jobs keep the one they ran in.
    pub async fn follow_experiment(
        &self,
        node_id: &str,
        experiment_id: Option<&str>,
    ) -> ApiResult<()> {
        let rows = crate::experiments::service::running_jobs(node_id)
            .all(&self.db)
            .await?;
        for row in rows {
            if row.experiment_id.as_deref() == experiment_id {
                continue;
            }
            let mut m = row.into_active_model();
            m.experiment_id = Set(experiment_id.map(str::to_owned));
            let row = m.update(&self.db).await?;
            let name = row.name.clone();
            self.emit(JobEventKind::Updated, node_id, &name, Some(row));
        }
        Ok(())
    }

    /// Forgets a job whose retained status its agent cleared.
    pub async fn forget(&self, node_id: &str, name: &str) -> ApiResult<()> {
        let res = job::Entity::delete_by_id((node_id.to_owned(), name.to_owned()))
            .exec(&self.db)
            .await?;
        if res.rows_affected > 0 {
            self.emit(JobEventKind::Removed, node_id, name, None);
        }
        Ok(())
    }

    /// Forgets every job of a removed node; returns their names (their retained topics are
    /// cleared too, so they do not come back).
    pub async fn forget_node(&self, node_id: &str) -> ApiResult<Vec<String>> {
        let names: Vec<String> = self
            .list(Some(node_id))
            .await?
            .into_iter()
            .map(|j| j.name)
            .collect();
        job::Entity::delete_many()
            .filter(job::Column::NodeId.eq(node_id))
            .exec(&self.db)
            .await?;
        for n in &names {
            self.emit(JobEventKind::Removed, node_id, n, None);
        }
        Ok(names)
    }

    /// Records the kinds a node's agent offers.
    pub async fn record_kinds(&self, node_id: &str, kinds: &JobKinds) -> ApiResult<()> {
        let Some(row) = node::Entity::find_by_id(node_id.to_owned())
            .one(&self.db)
            .await?
        else {
            // The announce creates the node; the agent sends its kinds again after every connect.
            return Ok(());
        };
        let value = serde_json::to_value(kinds).map_err(|e| {
            ApiError::Internal(format!("cannot store the job kinds of {node_id}: {e}"))
        })?;
        let mut m = row.into_active_model();
        m.job_kinds = Set(Some(value));
        m.update(&self.db).await?;
        Ok(())
    }

    /// The kinds node `node_id` offers (empty until its agent said).
    pub async fn kinds(&self, node_id: &str) -> ApiResult<Vec<KindSpec>> {
        let row = node::Entity::find_by_id(node_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("node {node_id:?}")))?;
        match row.job_kinds {
            None => Ok(Vec::new()),
            Some(v) => serde_json::from_value::<JobKinds>(v)
                .map(|k| k.kinds)
                .map_err(|e| {
                    ApiError::Internal(format!(
                        "stored job kinds of {node_id:?} do not decode: {e}"
                    ))
                }),
        }
    }

    /// Every job (of `node_id` when given), by node and name.
    pub async fn list(&self, node_id: Option<&str>) -> ApiResult<Vec<job::Model>> {
        let mut q = job::Entity::find()
            .order_by_asc(job::Column::NodeId)
            .order_by_asc(job::Column::Name);
        if let Some(n) = node_id {
            q = q.filter(job::Column::NodeId.eq(n));
        }
        Ok(q.all(&self.db).await?)
    }

    /// The jobs that ran or run in experiment `id`, by node and name.
    pub async fn in_experiment(&self, id: &str) -> ApiResult<Vec<job::Model>> {
        Ok(job::Entity::find()
            .filter(job::Column::ExperimentId.eq(id))
            .order_by_asc(job::Column::NodeId)
            .order_by_asc(job::Column::Name)
            .all(&self.db)
            .await?)
    }

    /// One job.
    pub async fn get(&self, node_id: &str, name: &str) -> ApiResult<Option<job::Model>> {
        Ok(
            job::Entity::find_by_id((node_id.to_owned(), name.to_owned()))
                .one(&self.db)
                .await?,
        )
    }

    async fn kind(&self, node_id: &str, kind: &str) -> ApiResult<KindSpec> {
        let kinds = self.kinds(node_id).await?;
        let names: Vec<&str> = kinds.iter().map(|k| k.kind.as_str()).collect();
        let offered = names.join(", ");
        kinds
            .iter()
            .find(|k| k.kind == kind)
            .cloned()
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "node {node_id:?} has no job kind {kind:?} (it has: {offered})"
                ))
            })
    }

    /// Sends `action` to the node and waits for the job's status to satisfy `done`. The agent's
    /// refusal is `BAD_REQUEST` in its words; a node that does not answer is `UNAVAILABLE`.
    async fn act(
        &self,
        bridge: &Bridge,
        node_id: &str,
        name: &str,
        action: Action,
        done: impl Fn(&job::Model) -> bool,
    ) -> ApiResult<job::Model> {
        let node = node::Entity::find_by_id(node_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("node {node_id:?}")))?;
        if node.state != trellis_proto::NodeState::Online.as_str() {
            return Err(ApiError::Unavailable(format!(
                "node {node_id:?} is {}",
                node.state
            )));
        }
        // Listen before sending, so the status that answers cannot slip by.
        let mut events = self.subscribe();
        let result = bridge
            .command(node_id, action, COMMAND_TIMEOUT)
            .await
            .map_err(|e| match e {
                CommandError::NotSent(_) | CommandError::NoAnswer(_) => {
                    ApiError::Unavailable(format!("node {node_id:?}: {e}"))
                }
            })?;
        if !result.ok {
            return Err(ApiError::BadRequest(result.message));
        }
        if let Some(row) = self.get(node_id, name).await?
            && done(&row)
        {
            return Ok(row);
        }
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(e) if e.node_id == node_id && e.name == name => {
                        if let Some(row) = e.job
                            && done(&row)
                        {
                            return Ok(row);
                        }
                    }
                    Ok(_) => {}
                    // Fell behind: the table has the latest.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(row) = self.get(node_id, name).await?
                            && done(&row)
                        {
                            return Ok(row);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(ApiError::Internal("job events closed".into()));
                    }
                }
            }
        };
        match tokio::time::timeout(EFFECT_TIMEOUT, wait).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Unavailable(format!(
                "node {node_id:?} took the command but job {name} did not report the change within {EFFECT_TIMEOUT:?}"
            ))),
        }
    }

    /// Every preset: the built-in ones, then those operators stored, by name.
    pub async fn all_presets(&self) -> ApiResult<Vec<Preset>> {
        let mut all = super::presets::builtin();
        for row in job_preset::Entity::find()
            .order_by_asc(job_preset::Column::Name)
            .all(&self.db)
            .await?
        {
            let settings: Settings = serde_json::from_value(row.settings).map_err(|e| {
                ApiError::Internal(format!(
                    "stored settings of preset {:?} do not decode: {e}",
                    row.name
                ))
            })?;
            all.push(Preset {
                name: row.name,
                kind: row.kind,
                description: row.description,
                settings,
                built_in: false,
            });
        }
        Ok(all)
    }

    /// The presets node `node_id` can run (those whose kind it offers).
    pub async fn presets(&self, node_id: &str) -> ApiResult<Vec<Preset>> {
        let kinds = self.kinds(node_id).await?;
        Ok(self
            .all_presets()
            .await?
            .into_iter()
            .filter(|p| kinds.iter().any(|k| k.kind == p.kind))
            .collect())
    }

    /// The preset `name`, built in or stored; `BAD_REQUEST` naming those there are.
    pub async fn preset(&self, name: &str) -> ApiResult<Preset> {
        let all = self.all_presets().await?;
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        let names = names.join(", ");
        all.iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| ApiError::BadRequest(format!("no preset {name:?} (there are: {names})")))
    }

    /// Stores preset `name` (new, or replacing one stored before): a kind some node offers and
    /// settings its rules accept. Built-in presets cannot be replaced.
    pub async fn save_preset(
        &self,
        name: &str,
        kind: &str,
        description: &str,
        settings: &Settings,
        caller: &Caller,
    ) -> ApiResult<Preset> {
        caller.may_use(kind)?;
        if let Some(old) = job_preset::Entity::find_by_id(name).one(&self.db).await? {
            caller.may_use(&old.kind)?;
        }
        trellis_proto::validate_job_name(name)
            .map_err(|e| ApiError::BadRequest(e.to_string().replace("job name", "preset name")))?;
        if super::presets::find(name).is_some() {
            return Err(ApiError::BadRequest(format!(
                "{name} is a built-in preset; store yours under another name"
            )));
        }
        if description.len() > 500 {
            return Err(ApiError::BadRequest(
                "the description is longer than 500 characters".into(),
            ));
        }
        // The kind's rules as the nodes that offer it declare them.
        let mut spec = None;
        for n in node::Entity::find().all(&self.db).await? {
            if let Some(k) = self
                .kinds(&n.id)
                .await?
                .into_iter()
                .find(|k| k.kind == kind)
            {
                spec = Some(k);
                break;
            }
        }
        let spec =
            spec.ok_or_else(|| ApiError::BadRequest(format!("no node offers job kind {kind:?}")))?;
        spec.resolve(settings).map_err(ApiError::BadRequest)?;
        let row = job_preset::ActiveModel {
            name: Set(name.to_owned()),
            kind: Set(kind.to_owned()),
            description: Set(description.to_owned()),
            settings: Set(
                serde_json::to_value(settings).map_err(|e| ApiError::Internal(e.to_string()))?
            ),
            updated_by: Set(caller.actor.clone()),
            updated_at: Set(Utc::now()),
        };
        if job_preset::Entity::find_by_id(name)
            .one(&self.db)
            .await?
            .is_some()
        {
            row.update(&self.db).await?;
        } else {
            row.insert(&self.db).await?;
        }
        Ok(Preset {
            name: name.to_owned(),
            kind: kind.to_owned(),
            description: description.to_owned(),
            settings: settings.clone(),
            built_in: false,
        })
    }

    /// Deletes stored preset `name`; `NOT_FOUND` when there is none (built-in ones stay).
    pub async fn delete_preset(&self, name: &str, caller: &Caller) -> ApiResult<()> {
        if super::presets::find(name).is_some() {
            return Err(ApiError::BadRequest(format!(
                "{name} is a built-in preset; it cannot be deleted"
            )));
        }
        if let Some(old) = job_preset::Entity::find_by_id(name).one(&self.db).await? {
            caller.may_use(&old.kind)?;
        }
        let gone = job_preset::Entity::delete_by_id(name)
            .exec(&self.db)
            .await?;
        if gone.rows_affected == 0 {
            return Err(ApiError::NotFound(format!("preset {name:?}")));
        }
        Ok(())
    }

    /// Starts a job on a node, of a kind or from a preset (`what`), named `name` (the kind's or
    /// preset's name when absent), with these settings over the preset's (the kind's defaults for
    /// the rest). Returns the job once it runs; `BAD_REQUEST` when it failed at once, with the
    /// reason.
    pub async fn start(
        &self,
        bridge: &Bridge,
        node_id: &str,
        what: &Start,
        name: Option<&str>,
        given: &Settings,
        caller: &Caller,
    ) -> ApiResult<job::Model> {
        let (kind, default_name, mut settings) = match what {
            Start::Kind(kind) => (kind.clone(), kind.clone(), Settings::new()),
            Start::Preset(preset) => {
                let p = self.preset(preset).await?;
                (p.kind, p.name, p.settings)
            }
        };
        caller.may_use(&kind)?;
        settings.extend(given.clone());
        let settings = &settings;
        let kind = kind.as_str();
        let name = name.unwrap_or(&default_name).to_owned();
        trellis_proto::validate_job_name(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.kind(node_id, kind)
            .await?
            .resolve(settings)
            .map_err(ApiError::BadRequest)?;
        // A start is done once the job left `init`, and it is this start's job (its status echoes
        // this start's id): not an earlier job of the same name, whose status may still be on
        // its way.
        let start = uuid::Uuid::new_v4().simple().to_string();
        let action = Action::StartJob {
            name: Some(name.clone()),
            kind: kind.to_owned(),
            settings: settings.clone(),
            start: Some(start.clone()),
        };
        let row = self
            .act(bridge, node_id, &name, action, |j| {
                j.state != JobState::Init.as_str() && j.start_id.as_deref() == Some(start.as_str())
            })
            .await?;
        let mut m = row.into_active_model();
        m.started_by = Set(Some(caller.actor.clone()));
        let row = m.update(&self.db).await?;
        if row.state == JobState::Failed.as_str() {
            return Err(ApiError::BadRequest(format!(
                "job {name} failed at start: {}",
                row.error.as_deref().unwrap_or("no reason given")
            )));
        }
        Ok(row)
    }

    /// The job, or `NOT_FOUND` naming it (a node is not asked about a job the leader never saw).
    async fn require(&self, node_id: &str, name: &str) -> ApiResult<job::Model> {
        self.get(node_id, name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("job {name:?} on node {node_id:?}")))
    }

    /// Stops a job; returns it once its hardware is released and it says `stopped`.
    pub async fn stop(&self, bridge: &Bridge, node_id: &str, name: &str) -> ApiResult<job::Model> {
        self.require(node_id, name).await?;
        let action = Action::StopJob {
            name: name.to_owned(),
        };
        self.act(bridge, node_id, name, action, |j| {
            JobState::parse(&j.state).is_some_and(JobState::is_final)
        })
        .await
    }

    /// Pauses a running job (hardware released, settings kept).
    pub async fn pause(&self, bridge: &Bridge, node_id: &str, name: &str) -> ApiResult<job::Model> {
        self.require(node_id, name).await?;
        let action = Action::PauseJob {
            name: name.to_owned(),
        };
        self.act(bridge, node_id, name, action, |j| {
            j.state == JobState::Sleeping.as_str() || j.state == JobState::Failed.as_str()
        })
        .await
    }

    /// Resumes a paused job.
    pub async fn resume(
        &self,
        bridge: &Bridge,
        node_id: &str,
        name: &str,
    ) -> ApiResult<job::Model> {
        self.require(node_id, name).await?;
        let action = Action::ResumeJob {
            name: name.to_owned(),
        };
        self.act(bridge, node_id, name, action, |j| {
            j.state == JobState::Ready.as_str() || j.state == JobState::Failed.as_str()
        })
        .await
    }

    /// Changes settings of a running job, all or nothing; returns the job once its agent echoes
    /// every new value. A refused value (unknown, not live, wrong type, out of range) changes
    /// nothing, and the error names the setting, the value and the rule.
    pub async fn set(
        &self,
        bridge: &Bridge,
        node_id: &str,
        name: &str,
        change: &Settings,
    ) -> ApiResult<job::Model> {
        let job = self.require(node_id, name).await?;
        self.kind(node_id, &job.kind)
            .await?
            .check_change(change)
            .map_err(ApiError::BadRequest)?;
        let action = Action::SetJobSettings {
            name: name.to_owned(),
            settings: change.clone(),
        };
        self.act(bridge, node_id, name, action, |j| {
            j.state == JobState::Failed.as_str()
                || change.iter().all(|(k, v)| j.settings.get(k) == Some(v))
        })
        .await
    }
}
