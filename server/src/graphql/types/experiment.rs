//! GraphQL types of the experiments domain: experiments, their nodes, notes, series and events.

use async_graphql::{Context, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::{AuditEvent, Job, Node, NodeView, ReadingBucket, time};
use crate::{
    AppState,
    experiments::{ExperimentEvent as ServiceEvent, ExperimentEventKind},
    telemetry::service::SeriesKey,
};

/// An experiment: a named run of work across some nodes.
pub struct Experiment(pub entity::experiment::Model);

/// A node's span in an experiment.
#[derive(SimpleObject)]
pub struct ExperimentMember {
    /// The node.
    pub node_id: String,
    /// When it joined.
    pub from: DateTime<Utc>,
    /// When it left; null while it is in.
    pub until: Option<DateTime<Utc>>,
    /// Who added it.
    pub added_by: String,
}

/// A note on an experiment.
#[derive(SimpleObject)]
pub struct ExperimentNote {
    /// Its id.
    pub id: i64,
    /// When it was written.
    pub time: DateTime<Utc>,
    /// Who wrote it.
    pub author: String,
    /// The note.
    pub text: String,
}

impl From<entity::experiment_note::Model> for ExperimentNote {
    fn from(n: entity::experiment_note::Model) -> Self {
        ExperimentNote {
            id: n.id,
            time: time(n.time_ms),
            author: n.author,
            text: n.text,
        }
    }
}

/// A stored series of readings: a node's job's metric in one experiment.
pub struct Series(pub entity::reading_series::Model);

#[Object]
impl Series {
    /// The node.
    async fn node_id(&self) -> &str {
        &self.0.node_id
    }
    /// The job.
    async fn job(&self) -> &str {
        &self.0.job
    }
    /// The metric.
    async fn metric(&self) -> &str {
        &self.0.metric
    }
    /// Its unit.
    async fn unit(&self) -> Option<&str> {
        self.0.unit.as_deref()
    }
    /// Its first reading's time.
    async fn first(&self) -> DateTime<Utc> {
        time(self.0.first_ms)
    }
    /// Its last reading's time.
    async fn last(&self) -> DateTime<Utc> {
        time(self.0.last_ms)
    }
    /// How many readings it holds.
    async fn count(&self) -> i64 {
        self.0.count
    }
    /// Its readings from `from` (its first when absent) to `to` (just after its last),
    /// downsampled to at most `points` buckets, as `readingSeries`.
    async fn buckets(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(default = 500)] points: i64,
    ) -> Result<Vec<ReadingBucket>> {
        let state = ctx.data::<AppState>()?;
        let from = from.map_or(self.0.first_ms, |t| t.timestamp_millis());
        let to = to.map_or(self.0.last_ms + 1, |t| t.timestamp_millis());
        let key = SeriesKey {
            node_id: &self.0.node_id,
            job: &self.0.job,
            metric: &self.0.metric,
            experiment_id: (!self.0.experiment_id.is_empty()).then_some(&self.0.experiment_id),
        };
        Ok(state
            .telemetry
            .series(&key, (from, to), points)
            .await?
            .into_iter()
            .map(ReadingBucket::from)
            .collect())
    }
}

#[Object]
impl Experiment {
    /// Its id.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// Its name, unique.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What it is about.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Who created it.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When it was created.
    async fn created(&self) -> DateTime<Utc> {
        time(self.0.created_ms)
    }
    /// When it ended; null while it runs.
    async fn ended(&self) -> Option<DateTime<Utc>> {
        self.0.ended_ms.map(time)
    }
    /// Who ended it.
    async fn ended_by(&self) -> Option<&str> {
        self.0.ended_by.as_deref()
    }
    /// Whether it runs.
    async fn running(&self) -> bool {
        self.0.ended_ms.is_none()
    }
    /// The nodes in it now.
    async fn nodes(&self, ctx: &Context<'_>) -> Result<Vec<Node>> {
        let state = ctx.data::<AppState>()?;
        let mut out = Vec::new();
        for m in state.experiments.members(&self.0.id, true).await? {
            if let Some(n) = state.nodes.get(&m.node_id).await? {
                out.push(Node(n));
            }
        }
        Ok(out)
    }
    /// Every span a node spent in it (past ones too), by start.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<ExperimentMember>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .experiments
            .members(&self.0.id, false)
            .await?
            .into_iter()
            .map(|m| ExperimentMember {
                node_id: m.node_id,
                from: time(m.from_ms),
                until: m.until_ms.map(time),
                added_by: m.added_by,
            })
            .collect())
    }
    /// The jobs that ran or run in it, by node and name.
    async fn jobs(&self, ctx: &Context<'_>) -> Result<Vec<Job>> {
        let state = ctx.data::<AppState>()?;
        let nodes = state.nodes.list().await?;
        Ok(state
            .jobs
            .in_experiment(&self.0.id)
            .await?
            .into_iter()
            .map(|row| {
                let view = nodes
                    .iter()
                    .find(|n| n.id == row.node_id)
                    .map_or(NodeView::Online, |n| NodeView::of(&n.state));
                Job { row, node: view }
            })
            .collect())
    }
    /// Its notes, oldest first.
    async fn notes(&self, ctx: &Context<'_>) -> Result<Vec<ExperimentNote>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .experiments
            .notes(&self.0.id)
            .await?
            .into_iter()
            .map(ExperimentNote::from)
            .collect())
    }
    /// The series of readings stored in it (of `metric` only when given), by metric, node and job.
    async fn series(&self, ctx: &Context<'_>, metric: Option<String>) -> Result<Vec<Series>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .telemetry
            .series_of(Some(&self.0.id), None, metric.as_deref())
            .await?
            .into_iter()
            .map(Series)
            .collect())
    }
    /// What people did to it and to its nodes and their jobs while they were in it (starts,
    /// setting changes, stops, ...: the audit log), newest first, at most `limit` (≤ 500).
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 200)] limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let state = ctx.data::<AppState>()?;
        let spans: Vec<(String, i64, Option<i64>)> = state
            .experiments
            .members(&self.0.id, false)
            .await?
            .into_iter()
            .map(|m| (m.node_id, m.from_ms, m.until_ms))
            .collect();
        let names = state.experiments.names(&self.0.id).await?;
        let limit = u64::try_from(limit).unwrap_or(0);
        Ok(state
            .audit
            .for_experiment(&names, &spans, (None, None), limit)
            .await?
            .into_iter()
            .map(AuditEvent)
            .collect())
    }
}

/// A change to an experiment, for subscribers.
pub struct ExperimentEvent(pub ServiceEvent);

#[Object]
impl ExperimentEvent {
    /// What happened (`RESYNC`: reload `experiments`).
    async fn kind(&self) -> ExperimentEventKind {
        self.0.kind
    }
    /// The experiment's id (empty on `RESYNC`).
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// The experiment after the change; null once removed.
    async fn experiment(&self) -> Option<Experiment> {
        self.0.experiment.clone().map(Experiment)
    }
}
