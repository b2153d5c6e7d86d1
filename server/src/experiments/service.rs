//! The experiments service: every read and write of `experiment`, `experiment_node` and
//! `experiment_note`, and the events those writes emit.
//!
//! Membership is a span of time: adding a node opens a span, removing it (or ending the
//! experiment) closes it. A reading belongs to the experiment whose span holds the reading's
//! time, so readings an agent sends late from its outage buffer land in the right experiment.
//! A running job belongs to its node's experiment and follows the node when it moves; a job that
//! has stopped keeps the experiment it ran in. A node already in another running experiment is
//! moved only when the caller says so (`move_nodes`); otherwise that is a `CONFLICT` naming the
//! experiment that holds it. The database holds the rule too (a unique index over open spans),
//! so two racing requests cannot both add a node.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use entity::{experiment, experiment_name, experiment_node, experiment_note, job, node};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, SqlErr, TransactionTrait,
    sea_query::ExprTrait,
};
use tokio::sync::broadcast;

use crate::error::{ApiError, ApiResult};

/// Changes of experiments' nodes (a join, a leave, an end), counted after each commits: the
/// ingester keeps nodes' spans in memory while this stays the same.
static MEMBERSHIP_CHANGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times experiments' nodes have changed since the process started.
pub fn membership_changes() -> u64 {
    MEMBERSHIP_CHANGES.load(std::sync::atomic::Ordering::SeqCst)
}

/// Counts a change of experiments' nodes; called once its transaction has committed.
fn membership_changed() {
    MEMBERSHIP_CHANGES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Longest experiment name, characters.
pub const MAX_NAME_LEN: usize = 100;
/// Longest description or note, characters.
pub const MAX_TEXT_LEN: usize = 10_000;
/// Capacity of the event channel; a subscriber further behind gets a resync.
pub const EVENT_CAPACITY: usize = 256;

/// What happened to an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum ExperimentEventKind {
    /// Created, renamed, described, annotated, ended, or its nodes changed.
    Updated,
    /// Deleted.
    Removed,
    /// The subscriber fell behind and missed events: reload.
    Resync,
}

/// An event for subscribers, with the experiment after the change (`None` once removed).
#[derive(Debug, Clone)]
pub struct ExperimentEvent {
    /// What happened.
    pub kind: ExperimentEventKind,
    /// The experiment's id.
    pub id: String,
    /// The experiment after the change.
    pub experiment: Option<experiment::Model>,
}

/// A node's spans of membership, by experiment: which experiment a time of that node falls in.
#[derive(Debug, Default, Clone)]
pub struct Membership {
    spans: HashMap<String, Vec<(i64, Option<i64>, String)>>,
}

impl Membership {
    /// The spans of `nodes` (those still open, or closed at or after `since_ms`).
    pub async fn load<C: ConnectionTrait>(
        db: &C,
        nodes: impl IntoIterator<Item = &str>,
        since_ms: i64,
    ) -> Result<Membership, DbErr> {
        let nodes: BTreeSet<&str> = nodes.into_iter().collect();
        let mut m = Membership::default();
        if nodes.is_empty() {
            return Ok(m);
        }
        let rows = experiment_node::Entity::find()
            .filter(experiment_node::Column::NodeId.is_in(nodes))
            .filter(
                experiment_node::Column::UntilMs
                    .is_null()
                    .or(experiment_node::Column::UntilMs.gt(since_ms)),
            )
            .all(db)
            .await?;
        for r in rows {
            m.spans
                .entry(r.node_id)
                .or_default()
                .push((r.from_ms, r.until_ms, r.experiment_id));
        }
        Ok(m)
    }

    /// Takes `other`'s spans for `nodes` in place of this one's (a node `other` has none of has
    /// none after).
    pub fn update<'a>(&mut self, nodes: impl IntoIterator<Item = &'a str>, other: &Membership) {
        for n in nodes {
            match other.spans.get(n) {
                Some(spans) => {
                    self.spans.insert(n.to_owned(), spans.clone());
                }
                None => {
                    self.spans.remove(n);
                }
            }
        }
    }

    /// The experiment node `node_id` belonged to at `time_ms`.
    pub fn at(&self, node_id: &str, time_ms: i64) -> Option<&str> {
        self.spans.get(node_id).and_then(|spans| {
            spans
                .iter()
                .find(|(from, until, _)| *from <= time_ms && until.is_none_or(|u| time_ms < u))
                .map(|(_, _, e)| e.as_str())
        })
    }
}

/// The running experiment node `node_id` is in now, if any.
pub async fn current<C: ConnectionTrait>(db: &C, node_id: &str) -> Result<Option<String>, DbErr> {
    Ok(experiment_node::Entity::find()
        .filter(experiment_node::Column::NodeId.eq(node_id))
        .filter(experiment_node::Column::UntilMs.is_null())
        .one(db)
        .await?
        .map(|m| m.experiment_id))
}

/// The experiments service; cheap to clone.
#[derive(Clone)]
pub struct Experiments {
    db: DatabaseConnection,
    events: broadcast::Sender<ExperimentEvent>,
    jobs: crate::jobs::Jobs,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Records that experiment `id` has been called `name` since `from_ms`.
async fn name_from(
    txn: &sea_orm::DatabaseTransaction,
    id: &str,
    name: &str,
    from_ms: i64,
) -> Result<(), DbErr> {
    experiment_name::ActiveModel {
        experiment_id: Set(id.to_owned()),
        name: Set(name.to_owned()),
        from_ms: Set(from_ms),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(())
}

/// A name as stored: trimmed, 1 to [`MAX_NAME_LEN`] characters, no control characters.
fn check_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::BadRequest("an experiment needs a name".into()));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::BadRequest(format!(
            "experiment name is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.chars().count()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "experiment name {name:?} holds a control character"
        )));
    }
    Ok(name.to_owned())
}

/// A description or note as stored: at most [`MAX_TEXT_LEN`] characters, no NUL.
fn check_text(what: &str, text: &str) -> ApiResult<String> {
    if text.chars().count() > MAX_TEXT_LEN {
        return Err(ApiError::BadRequest(format!(
            "{what} is {} characters long; at most {MAX_TEXT_LEN} are allowed",
            text.chars().count()
        )));
    }
    Ok(text.replace('\0', "\u{FFFD}"))
}

/// A unique-name violation said as what it is.
fn name_taken(e: DbErr, name: &str) -> ApiError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            ApiError::Conflict(format!("an experiment named {name:?} exists already"))
        }
        _ => e.into(),
    }
}

impl Experiments {
    /// A service over `db`; moving a node moves its running jobs through `jobs`.
    pub fn new(db: DatabaseConnection, jobs: crate::jobs::Jobs) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Experiments { db, events, jobs }
    }

    /// A receiver of every experiment event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ExperimentEvent> {
        self.events.subscribe()
    }

    async fn emit(&self, id: &str) {
        let experiment = experiment::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .ok()
            .flatten();
        let kind = if experiment.is_some() {
            ExperimentEventKind::Updated
        } else {
            ExperimentEventKind::Removed
        };
        // No subscriber is fine.
        let _ = self.events.send(ExperimentEvent {
            kind,
            id: id.to_owned(),
            experiment,
        });
    }

    /// Every experiment (only the running ones when `running_only`), newest first.
    pub async fn list(&self, running_only: bool) -> ApiResult<Vec<experiment::Model>> {
        let mut q = experiment::Entity::find()
            .order_by_desc(experiment::Column::CreatedMs)
            .order_by_asc(experiment::Column::Name);
        if running_only {
            q = q.filter(experiment::Column::EndedMs.is_null());
        }
        Ok(q.all(&self.db).await?)
    }

    /// The experiment with this id, or else this name; `NOT_FOUND` when neither.
    pub async fn find(&self, id_or_name: &str) -> ApiResult<experiment::Model> {
        if let Some(e) = experiment::Entity::find_by_id(id_or_name)
            .one(&self.db)
            .await?
        {
            return Ok(e);
        }
        experiment::Entity::find()
            .filter(experiment::Column::Name.eq(id_or_name.trim()))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("experiment {id_or_name:?}")))
    }

    /// The experiment with this id, if any.
    pub async fn get(&self, id: &str) -> ApiResult<Option<experiment::Model>> {
        Ok(experiment::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Creates a running experiment with `nodes` in it (moved from another running experiment
    /// only when `move_nodes`).
    pub async fn create(
        &self,
        name: &str,
        description: &str,
        nodes: &[String],
        move_nodes: bool,
        actor: &str,
    ) -> ApiResult<experiment::Model> {
        let name = check_name(name)?;
        let description = check_text("description", description)?;
        let row = experiment::ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            name: Set(name.clone()),
            description: Set(description),
            created_by: Set(actor.to_owned()),
            created_ms: Set(now_ms()),
            ended_ms: Set(None),
            ended_by: Set(None),
        };
        let txn = self.db.begin().await?;
        let created = row.insert(&txn).await.map_err(|e| name_taken(e, &name))?;
        name_from(&txn, &created.id, &name, created.created_ms).await?;
        let moved = self.join(&txn, &created, nodes, move_nodes, actor).await?;
        txn.commit().await?;
        membership_changed();
        self.after_join(&created.id, &moved).await?;
        Ok(created)
    }

    /// Renames an experiment; the name it had stays on record with its time (its events
    /// recorded under it stay its events).
    pub async fn rename(&self, id: &str, name: &str) -> ApiResult<experiment::Model> {
        let name = check_name(name)?;
        let e = self.find(id).await?;
        if e.name == name {
            return Ok(e);
        }
        let txn = self.db.begin().await?;
        let mut m = e.into_active_model();
        m.name = Set(name.clone());
        let e = m.update(&txn).await.map_err(|e| name_taken(e, &name))?;
        name_from(&txn, &e.id, &name, now_ms()).await?;
        txn.commit().await?;
        self.emit(&e.id).await;
        Ok(e)
    }

    /// The names experiment `id` has had, oldest first, each with the time it took it and the
    /// time it gave it up (`None` for the current one).
    pub async fn names(&self, id: &str) -> ApiResult<Vec<(String, i64, Option<i64>)>> {
        let rows = experiment_name::Entity::find()
            .filter(experiment_name::Column::ExperimentId.eq(id))
            .order_by_asc(experiment_name::Column::FromMs)
            .order_by_asc(experiment_name::Column::Id)
            .all(&self.db)
            .await?;
        let untils: Vec<Option<i64>> = rows
            .iter()
            .skip(1)
            .map(|r| Some(r.from_ms))
            .chain([None])
            .collect();
        Ok(rows
            .into_iter()
            .zip(untils)
            .map(|(r, until)| (r.name, r.from_ms, until))
            .collect())
    }

    /// Replaces an experiment's description.
    pub async fn describe(&self, id: &str, description: &str) -> ApiResult<experiment::Model> {
        let description = check_text("description", description)?;
        let e = self.find(id).await?;
        let mut m = e.into_active_model();
        m.description = Set(description);
        let e = m.update(&self.db).await?;
        self.emit(&e.id).await;
        Ok(e)
    }

    /// Adds a note to an experiment, now (ended experiments too: conclusions come later).
    pub async fn annotate(
        &self,
        id: &str,
        text: &str,
        actor: &str,
    ) -> ApiResult<experiment_note::Model> {
        let text = check_text("note", text)?;
        if text.trim().is_empty() {
            return Err(ApiError::BadRequest("a note needs some text".into()));
        }
        let e = self.find(id).await?;
        let note = experiment_note::ActiveModel {
            experiment_id: Set(e.id.clone()),
            time_ms: Set(now_ms()),
            author: Set(actor.to_owned()),
            text: Set(text),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        self.emit(&e.id).await;
        Ok(note)
    }

    /// An experiment's notes, oldest first.
    pub async fn notes(&self, id: &str) -> ApiResult<Vec<experiment_note::Model>> {
        Ok(experiment_note::Entity::find()
            .filter(experiment_note::Column::ExperimentId.eq(id))
            .order_by_asc(experiment_note::Column::TimeMs)
            .order_by_asc(experiment_note::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Ends a running experiment: its nodes leave it (their running jobs keep running, in no
    /// experiment). Ending one that has ended is `BAD_REQUEST`.
    pub async fn end(&self, id: &str, actor: &str) -> ApiResult<experiment::Model> {
        let e = self.find(id).await?;
        if e.ended_ms.is_some() {
            return Err(ApiError::BadRequest(format!(
                "experiment {:?} has ended already",
                e.name
            )));
        }
        let now = now_ms();
        let txn = self.db.begin().await?;
        let e = lock(&txn, &e.id).await?;
        if e.ended_ms.is_some() {
            return Err(ApiError::BadRequest(format!(
                "experiment {:?} has ended already",
                e.name
            )));
        }
        let members = self.open_spans(&txn, &e.id).await?;
        let left: Vec<String> = members.iter().map(|m| m.node_id.clone()).collect();
        close_spans(&txn, members, now).await?;
        let mut m = e.into_active_model();
        m.ended_ms = Set(Some(now));
        m.ended_by = Set(Some(actor.to_owned()));
        let e = m.update(&txn).await?;
        txn.commit().await?;
        membership_changed();
        for n in &left {
            self.jobs.follow_experiment(n, None).await?;
        }
        self.emit(&e.id).await;
        Ok(e)
    }

    /// Adds nodes to a running experiment (moving them from another running experiment only when
    /// `move_nodes`). A node already in it stays as it is.
    pub async fn add_nodes(
        &self,
        id: &str,
        nodes: &[String],
        move_nodes: bool,
        actor: &str,
    ) -> ApiResult<experiment::Model> {
        let e = self.find(id).await?;
        if e.ended_ms.is_some() {
            return Err(ApiError::BadRequest(format!(
                "experiment {:?} has ended: it takes no nodes",
                e.name
            )));
        }
        let txn = self.db.begin().await?;
        // Checked again under the lock: an end that committed meanwhile wins.
        let e = lock(&txn, &e.id).await?;
        if e.ended_ms.is_some() {
            return Err(ApiError::BadRequest(format!(
                "experiment {:?} has ended: it takes no nodes",
                e.name
            )));
        }
        let moved = self.join(&txn, &e, nodes, move_nodes, actor).await?;
        txn.commit().await?;
        membership_changed();
        self.after_join(&e.id, &moved).await?;
        Ok(e)
    }

    /// Takes nodes out of an experiment (their running jobs keep running, in no experiment). A
    /// node not in it is `BAD_REQUEST`.
    pub async fn remove_nodes(&self, id: &str, nodes: &[String]) -> ApiResult<experiment::Model> {
        let e = self.find(id).await?;
        let txn = self.db.begin().await?;
        let e = lock(&txn, &e.id).await?;
        let open = self.open_spans(&txn, &e.id).await?;
        let wanted: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
        for n in &wanted {
            if !open.iter().any(|m| m.node_id == *n) {
                return Err(ApiError::BadRequest(format!(
                    "node {n:?} is not in experiment {:?}",
                    e.name
                )));
            }
        }
        let leaving: Vec<_> = open
            .into_iter()
            .filter(|m| wanted.contains(m.node_id.as_str()))
            .collect();
        close_spans(&txn, leaving, now_ms()).await?;
        txn.commit().await?;
        membership_changed();
        for n in wanted {
            self.jobs.follow_experiment(n, None).await?;
        }
        self.emit(&e.id).await;
        Ok(e)
    }

    /// Every span of membership of an experiment (only the open ones when `current_only`), by
    /// start.
    pub async fn members(
        &self,
        id: &str,
        current_only: bool,
    ) -> ApiResult<Vec<experiment_node::Model>> {
        let mut q = experiment_node::Entity::find()
            .filter(experiment_node::Column::ExperimentId.eq(id))
            .order_by_asc(experiment_node::Column::FromMs)
            .order_by_asc(experiment_node::Column::Id);
        if current_only {
            q = q.filter(experiment_node::Column::UntilMs.is_null());
        }
        Ok(q.all(&self.db).await?)
    }

    /// The running experiment node `node_id` is in now.
    pub async fn of_node(&self, node_id: &str) -> ApiResult<Option<experiment::Model>> {
        match current(&self.db, node_id).await? {
            None => Ok(None),
            Some(id) => self.get(&id).await,
        }
    }

    /// Running experiments by the nodes in them (for lists of nodes).
    pub async fn by_node(&self) -> ApiResult<BTreeMap<String, experiment::Model>> {
        let open = experiment_node::Entity::find()
            .filter(experiment_node::Column::UntilMs.is_null())
            .all(&self.db)
            .await?;
        let running: HashMap<String, experiment::Model> = self
            .list(true)
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
        Ok(open
            .into_iter()
            .filter_map(|m| {
                running
                    .get(&m.experiment_id)
                    .map(|e| (m.node_id, e.clone()))
            })
            .collect())
    }

    async fn open_spans<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> ApiResult<Vec<experiment_node::Model>> {
        Ok(experiment_node::Entity::find()
            .filter(experiment_node::Column::ExperimentId.eq(id))
            .filter(experiment_node::Column::UntilMs.is_null())
            .all(db)
            .await?)
    }

    /// Opens a span for each node not in `e` yet, inside `txn`; returns the nodes that joined and
    /// the experiments they left.
    async fn join(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        e: &experiment::Model,
        nodes: &[String],
        move_nodes: bool,
        actor: &str,
    ) -> ApiResult<Vec<(String, Option<String>)>> {
        let now = now_ms();
        let mut joined = Vec::new();
        let wanted: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
        for n in wanted {
            if node::Entity::find_by_id(n).one(txn).await?.is_none() {
                return Err(ApiError::NotFound(format!("node {n:?}")));
            }
            let open = experiment_node::Entity::find()
                .filter(experiment_node::Column::NodeId.eq(n))
                .filter(experiment_node::Column::UntilMs.is_null())
                .one(txn)
                .await?;
            let mut left = None;
            if let Some(span) = open {
                if span.experiment_id == e.id {
                    continue;
                }
                if !move_nodes {
                    let other = experiment::Entity::find_by_id(&span.experiment_id)
                        .one(txn)
                        .await?
                        .map(|o| o.name)
                        .unwrap_or_else(|| span.experiment_id.clone());
                    return Err(ApiError::Conflict(format!(
                        "node {n:?} is in running experiment {other:?}: end that, take the node out of it, or move it (moveNodes: true)"
                    )));
                }
                left = Some(span.experiment_id.clone());
                close_spans(txn, vec![span], now).await?;
            }
            experiment_node::ActiveModel {
                experiment_id: Set(e.id.clone()),
                node_id: Set(n.to_owned()),
                from_ms: Set(now),
                until_ms: Set(None),
                added_by: Set(actor.to_owned()),
                ..Default::default()
            }
            .insert(txn)
            .await
            .map_err(|err| match err.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => ApiError::Conflict(format!(
                    "node {n:?} was added to another experiment at the same time"
                )),
                _ => err.into(),
            })?;
            joined.push((n.to_owned(), left));
        }
        Ok(joined)
    }

    /// After a join committed: running jobs follow their node; every experiment touched tells.
    async fn after_join(&self, id: &str, joined: &[(String, Option<String>)]) -> ApiResult<()> {
        let mut touched = BTreeSet::new();
        for (n, left) in joined {
            self.jobs.follow_experiment(n, Some(id)).await?;
            if let Some(l) = left {
                touched.insert(l.clone());
            }
        }
        for l in touched {
            self.emit(&l).await;
        }
        self.emit(id).await;
        Ok(())
    }
}

/// Takes experiment `id`'s row for this transaction (a write first: SQLite's write lock, or
/// Postgres's row lock, held from here to the commit, so changes to one experiment's nodes and
/// its end happen one after another, and a transaction that reads then writes never meets a
/// write that slipped in between) and reads it as it is now.
async fn lock(txn: &sea_orm::DatabaseTransaction, id: &str) -> ApiResult<experiment::Model> {
    use sea_orm::sea_query::Expr;
    experiment::Entity::update_many()
        .col_expr(
            experiment::Column::Name,
            Expr::col(experiment::Column::Name),
        )
        .filter(experiment::Column::Id.eq(id))
        .exec(txn)
        .await?;
    experiment::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("experiment {id:?}")))
}

async fn close_spans<C: ConnectionTrait>(
    db: &C,
    spans: Vec<experiment_node::Model>,
    now: i64,
) -> ApiResult<()> {
    for s in spans {
        let mut m = s.into_active_model();
        m.until_ms = Set(Some(now));
        m.update(db).await?;
    }
    Ok(())
}

/// Jobs of `node_id` still running (not stopped or failed): the ones that follow their node.
pub fn running_jobs(node_id: &str) -> sea_orm::Select<job::Entity> {
    job::Entity::find()
        .filter(job::Column::NodeId.eq(node_id))
        .filter(job::Column::State.is_not_in(["stopped", "failed"]))
}
