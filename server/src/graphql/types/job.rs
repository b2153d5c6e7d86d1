//! GraphQL types of the jobs domain: jobs, the kinds a node offers with their settings' rules,
//! and job events.

use async_graphql::{Enum, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::jobs::{JobEvent as ServiceEvent, JobEventKind};

/// Where a job is in its life, as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum JobState {
    /// Starting: the hardware is being set up.
    Init,
    /// Running.
    Ready,
    /// Paused: hardware released, settings kept.
    Sleeping,
    /// Stopped on request.
    Stopped,
    /// Stopped by a failure (see `error`).
    Failed,
    /// Its node is lost: the leader cannot know what the job does. It shows the agent's state
    /// again when the node is back.
    Lost,
    /// Its node's agent was stopped cleanly, so the job does not run now; the agent starts it
    /// again when it starts.
    Offline,
}

/// What the leader knows of a job's node, for the job's state as the leader shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeView {
    /// Online (or not known to be otherwise): the agent's state stands.
    #[default]
    Online,
    /// Lost: a job that had not ended shows `LOST`.
    Lost,
    /// Stopped cleanly: a job that had not ended shows `OFFLINE`.
    Offline,
}

impl NodeView {
    /// The view for a node in `state` (as stored).
    pub fn of(state: &str) -> NodeView {
        match trellis_proto::NodeState::parse(state) {
            Some(trellis_proto::NodeState::Lost) => NodeView::Lost,
            Some(trellis_proto::NodeState::Offline) => NodeView::Offline,
            _ => NodeView::Online,
        }
    }
}

/// A job on a node.
pub struct Job {
    /// The row.
    pub row: entity::job::Model,
    /// What the leader knows of its node (a job that had not ended shows `LOST` or `OFFLINE`).
    pub node: NodeView,
}

#[Object]
impl Job {
    /// The node it runs on.
    async fn node_id(&self) -> &str {
        &self.row.node_id
    }
    /// Its name, unique on its node.
    async fn name(&self) -> &str {
        &self.row.name
    }
    /// Its kind.
    async fn kind(&self) -> &str {
        &self.row.kind
    }
    /// Its state.
    async fn state(&self) -> async_graphql::Result<JobState> {
        let state = trellis_proto::JobState::parse(&self.row.state).ok_or_else(|| {
            crate::error::ApiError::Internal(format!(
                "stored state {:?} of job {} is not a job state",
                self.row.state, self.row.name
            ))
        })?;
        if !state.is_final() {
            match self.node {
                NodeView::Lost => return Ok(JobState::Lost),
                NodeView::Offline => return Ok(JobState::Offline),
                NodeView::Online => {}
            }
        }
        Ok(match state {
            trellis_proto::JobState::Init => JobState::Init,
            trellis_proto::JobState::Ready => JobState::Ready,
            trellis_proto::JobState::Sleeping => JobState::Sleeping,
            trellis_proto::JobState::Stopped => JobState::Stopped,
            trellis_proto::JobState::Failed => JobState::Failed,
        })
    }
    /// The experiment it runs in (or ran in, once ended): its node's when it was started, and it
    /// follows its node while it runs.
    async fn experiment(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> async_graphql::Result<Option<super::Experiment>> {
        let Some(id) = &self.row.experiment_id else {
            return Ok(None);
        };
        let state = ctx.data::<crate::AppState>()?;
        Ok(state.experiments.get(id).await?.map(super::Experiment))
    }
    /// The settings in force: setting name → value, as the agent echoed them.
    async fn settings(&self) -> Json<serde_json::Value> {
        Json(self.row.settings.clone())
    }
    /// Why it failed.
    async fn error(&self) -> Option<&str> {
        self.row.error.as_deref()
    }
    /// Its latest values, name → number (a `pid` job's `measured` and `output`), refreshed at
    /// most once a second; null for kinds that report none.
    async fn values(&self) -> Option<Json<serde_json::Value>> {
        self.row.latest_values.clone().map(Json)
    }
    /// Its newest `last` log lines (at most 1000), oldest first: a program's output and the
    /// agent's words about the job. The leader keeps the newest 2000 per job.
    async fn logs(
        &self,
        ctx: &async_graphql::Context<'_>,
        #[graphql(default = 200)] last: i64,
    ) -> async_graphql::Result<Vec<super::JobLogLine>> {
        let state = ctx.data::<crate::AppState>()?;
        Ok(state
            .telemetry
            .logs(
                &self.row.node_id,
                &self.row.name,
                u64::try_from(last).unwrap_or(0),
            )
            .await?
            .into_iter()
            .map(super::JobLogLine::from)
            .collect())
    }
    /// Its log lines the leader no longer keeps (older than the newest 2000).
    async fn logs_dropped(&self) -> i64 {
        self.row.logs_dropped
    }
    /// Who started it through this leader.
    async fn started_by(&self) -> Option<&str> {
        self.row.started_by.as_deref()
    }
    /// When the leader last heard of it.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
}

/// The type of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum SettingType {
    /// A whole number.
    Int,
    /// A number.
    Float,
    /// True or false.
    Bool,
    /// Text.
    String,
    /// One of `choices`.
    Enum,
}

/// A setting of a job kind and the values it takes.
#[derive(SimpleObject)]
pub struct JobSetting {
    /// Name.
    pub name: String,
    /// Type.
    #[graphql(name = "type")]
    pub ty: SettingType,
    /// Unit, if any.
    pub unit: Option<String>,
    /// Lowest value (numbers).
    pub min: Option<f64>,
    /// Highest value (numbers).
    pub max: Option<f64>,
    /// The values of an enum.
    pub choices: Vec<String>,
    /// The value when a start does not give one.
    pub default: Json<serde_json::Value>,
    /// Whether it can change while the job runs.
    pub live: bool,
    /// One line for people.
    pub description: String,
}

/// A kind of job a node offers.
#[derive(SimpleObject)]
pub struct JobKind {
    /// Name (`pwm`, `gpio`, ...).
    pub kind: String,
    /// One line for people.
    pub description: String,
    /// Its settings.
    pub settings: Vec<JobSetting>,
    /// Whether it takes settings beyond those listed (an `exec` job's program has its own: any
    /// number, true/false or text, all live).
    pub open: bool,
}

impl From<trellis_proto::KindSpec> for JobKind {
    fn from(k: trellis_proto::KindSpec) -> Self {
        JobKind {
            open: k.open,
            kind: k.kind,
            description: k.description,
            settings: k
                .settings
                .into_iter()
                .map(|s| JobSetting {
                    name: s.name,
                    ty: match s.ty {
                        trellis_proto::SettingType::Int => SettingType::Int,
                        trellis_proto::SettingType::Float => SettingType::Float,
                        trellis_proto::SettingType::Bool => SettingType::Bool,
                        trellis_proto::SettingType::String => SettingType::String,
                        trellis_proto::SettingType::Enum => SettingType::Enum,
                    },
                    unit: s.unit,
                    min: s.min,
                    max: s.max,
                    choices: s.choices,
                    default: Json(s.default),
                    live: s.live,
                    description: s.description,
                })
                .collect(),
        }
    }
}

/// A preset: a kind and the settings a start from it uses.
#[derive(SimpleObject)]
pub struct JobPreset {
    /// Its name (also the default job name).
    pub name: String,
    /// The kind it starts.
    pub kind: String,
    /// One line for people.
    pub description: String,
    /// The settings it gives (the kind's defaults for the rest).
    pub settings: Json<trellis_proto::Settings>,
    /// Built in (fixed), or stored by an operator (`saveJobPreset`).
    pub built_in: bool,
}

impl From<crate::jobs::presets::Preset> for JobPreset {
    fn from(p: crate::jobs::presets::Preset) -> Self {
        JobPreset {
            name: p.name,
            kind: p.kind,
            description: p.description,
            settings: Json(p.settings),
            built_in: p.built_in,
        }
    }
}

/// Something that happened to a job.
pub struct JobEvent(pub ServiceEvent);

#[Object]
impl JobEvent {
    /// What happened.
    async fn kind(&self) -> JobEventKind {
        self.0.kind
    }
    /// The node.
    async fn node_id(&self) -> &str {
        &self.0.node_id
    }
    /// The job's name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The job after the change (null once removed, and for `RESYNC`). Its state is the agent's:
    /// a lost node shows in `nodeEvents`.
    async fn job(&self) -> Option<Job> {
        self.0.job.clone().map(|row| Job {
            row,
            node: NodeView::Online,
        })
    }
}
