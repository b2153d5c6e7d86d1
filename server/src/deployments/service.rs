//! Every read and write of the deployment tables: deployments and their revisions, what each
//! node's instance should run, rollouts as they start. Every change wakes the reconciler; nothing
//! here talks to Docker (the reconciler's workers do).

use std::collections::{BTreeMap, HashMap};

use entity::{
    cluster_identity, deployment, deployment_instance as instance, deployment_restart,
    deployment_revision as revision, node, rollout,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use tokio::sync::{OnceCell, broadcast, mpsc};

use super::{
    Input,
    spec::{self, DeploymentSpec},
};
use crate::error::{ApiError, ApiResult};

/// Deployment events a subscriber can miss before it is told to resync.
pub const EVENT_CAPACITY: usize = 1024;
/// An instance's desired revision while it waits for its batch of a deployment's first
/// rollout: no container yet, but chosen.
pub const AWAITING: i32 = 0;
/// Revisions kept per deployment (besides the live and target ones).
pub const KEEP_REVISIONS: u64 = 100;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum DeploymentEventKind {
    /// The deployment itself (a new revision, started, stopped).
    Deployment,
    /// One node's instance (its state, container, health).
    Instance,
    /// A rollout (a batch opened, passed or failed; the rollout ended).
    Rollout,
    /// The deployment is gone.
    Removed,
    /// The subscriber missed events: read everything again.
    Resync,
}

/// An event for subscribers.
#[derive(Debug, Clone)]
pub struct DeploymentEvent {
    /// What changed.
    pub kind: DeploymentEventKind,
    /// The deployment (empty for a resync).
    pub deployment_id: String,
    /// The node, for an instance event.
    pub node_id: Option<String>,
}

/// The deployment service. Cheap to clone.
#[derive(Clone)]
pub struct Deployments {
    pub(super) db: DatabaseConnection,
    pub(super) events: broadcast::Sender<DeploymentEvent>,
    pub(super) inbox: mpsc::Sender<Input>,
    cluster: std::sync::Arc<OnceCell<String>>,
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn taken(name: &str) -> ApiError {
    ApiError::Conflict(format!("a deployment named {name:?} exists"))
}

fn parse_spec(r: &revision::Model) -> ApiResult<DeploymentSpec> {
    serde_json::from_str(&r.spec).map_err(|e| {
        ApiError::Internal(format!(
            "revision {} of deployment {} does not read: {e}",
            r.revision, r.deployment_id
        ))
    })
}

/// A node's labels as stored.
pub fn node_labels(n: &node::Model) -> BTreeMap<String, String> {
    serde_json::from_value(n.labels.clone()).unwrap_or_default()
}

/// A deployment with what is shown beside it.
#[derive(Debug, Clone)]
pub struct DeploymentView {
    /// The row.
    pub row: deployment::Model,
    /// The spec of its target revision.
    pub spec: DeploymentSpec,
}

impl Deployments {
    pub(super) fn new(db: DatabaseConnection, inbox: mpsc::Sender<Input>) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Deployments {
            db,
            events,
            inbox,
            cluster: std::sync::Arc::default(),
        }
    }

    /// A receiver of every deployment event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeploymentEvent> {
        self.events.subscribe()
    }

    pub(super) fn emit(
        &self,
        kind: DeploymentEventKind,
        deployment_id: &str,
        node_id: Option<&str>,
    ) {
        let _ = self.events.send(DeploymentEvent {
            kind,
            deployment_id: deployment_id.to_owned(),
            node_id: node_id.map(str::to_owned),
        });
    }

    /// Tells the reconciler; never waits (a full inbox asks for a resync, which rereads all).
    pub(super) fn wake(&self, input: Input) {
        if self.inbox.try_send(input).is_err() {
            let _ = self.inbox.try_send(Input::Resync);
        }
    }

    /// This cluster's id, made once and kept in the database.
    pub async fn cluster_id(&self) -> ApiResult<String> {
        self.cluster
            .get_or_try_init(|| async {
                if let Some(row) = cluster_identity::Entity::find().one(&self.db).await? {
                    return Ok(row.id);
                }
                let id = uuid::Uuid::new_v4().simple().to_string();
                let row = cluster_identity::ActiveModel {
                    id: Set(id),
                    created_ms: Set(now_ms()),
                };
                // Two leaders starting at once on one database: the second insert fails and
                // both read the one row.
                let _ = row.insert(&self.db).await;
                cluster_identity::Entity::find()
                    .order_by_asc(cluster_identity::Column::CreatedMs)
                    .one(&self.db)
                    .await?
                    .map(|r| r.id)
                    .ok_or_else(|| ApiError::Internal("no cluster id".into()))
            })
            .await
            .cloned()
    }

    /// Every deployment, by name.
    pub async fn list(&self) -> ApiResult<Vec<deployment::Model>> {
        Ok(deployment::Entity::find()
            .order_by_asc(deployment::Column::Name)
            .all(&self.db)
            .await?)
    }

    /// One deployment by id or name.
    pub async fn find(&self, id_or_name: &str) -> ApiResult<deployment::Model> {
        deployment::Entity::find()
            .filter(
                Condition::any()
                    .add(deployment::Column::Id.eq(id_or_name))
                    .add(deployment::Column::Name.eq(id_or_name)),
            )
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("deployment {id_or_name:?}")))
    }

    /// One revision.
    pub async fn revision(&self, deployment_id: &str, n: i32) -> ApiResult<revision::Model> {
        revision::Entity::find()
            .filter(revision::Column::DeploymentId.eq(deployment_id))
            .filter(revision::Column::Revision.eq(n))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("revision {n}")))
    }

    /// The spec of one revision.
    pub async fn spec(&self, deployment_id: &str, n: i32) -> ApiResult<DeploymentSpec> {
        parse_spec(&self.revision(deployment_id, n).await?)
    }

    /// Revisions, newest first.
    pub async fn revisions(
        &self,
        deployment_id: &str,
        limit: u64,
    ) -> ApiResult<Vec<revision::Model>> {
        Ok(revision::Entity::find()
            .filter(revision::Column::DeploymentId.eq(deployment_id))
            .order_by_desc(revision::Column::Revision)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Which images the deployments name and which of them must stay on nodes: every image
    /// some revision names (an image no revision names is not Trellis's to prune, nor one a
    /// `pull: NEVER` revision names, other than an app's built on its nodes), and those
    /// of each deployment's latest, target and live revisions and of its newest revision that
    /// rolled out before them (the rollback image). Over all nodes: keeping an image on a node
    /// that no longer runs the deployment costs disk, removing one that is needed costs a
    /// rollback.
    pub async fn image_needs(
        &self,
    ) -> ApiResult<(
        std::collections::BTreeSet<String>,
        std::collections::BTreeSet<String>,
    )> {
        let mut named = std::collections::BTreeSet::new();
        let mut keep = std::collections::BTreeSet::new();
        let mut by_hand = std::collections::BTreeSet::new();
        let deployments: HashMap<String, deployment::Model> = deployment::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        let mut revisions = revision::Entity::find()
            .order_by_desc(revision::Column::Revision)
            .all(&self.db)
            .await?;
        revisions.sort_by(|a, b| {
            (&a.deployment_id, std::cmp::Reverse(a.revision))
                .cmp(&(&b.deployment_id, std::cmp::Reverse(b.revision)))
        });
        let mut last_good_seen: std::collections::HashSet<String> = Default::default();
        for r in &revisions {
            let Ok(spec) = parse_spec(r) else { continue };
            let mut images: Vec<String> = vec![spec.container.image.clone()];
            images.dedup();
            // An image with `pull: NEVER` was put on its nodes by hand, and nothing could bring
            // it back: never Trellis's to remove (whatever other revisions say of it). Only an
            // app's, which its node builds again.
            if spec.container.pull == super::spec::PullPolicy::Never
                && !spec.container.image.starts_with("trellis-app/")
            {
                by_hand.extend(images.iter().cloned());
            }
            named.extend(images.iter().cloned());
            let Some(d) = deployments.get(&r.deployment_id) else {
                continue;
            };
            if d.deleting {
                continue;
            }
            let current = [
                Some(d.latest_revision),
                Some(d.target_revision),
                d.live_revision,
            ];
            let wanted = current.contains(&Some(r.revision));
            // Newest first: the first rolled-out revision below the current ones is the
            // rollback image.
            let rollback = !wanted
                && r.revision < d.target_revision
                && r.outcome.as_deref() == Some("rolled_out")
                && last_good_seen.insert(d.id.clone());
            if wanted || rollback {
                keep.extend(images);
            }
        }
        named.retain(|image| !by_hand.contains(image));
        Ok((named, keep))
    }

    /// Every node's instance of a deployment, by node.
    pub async fn instances(&self, deployment_id: &str) -> ApiResult<Vec<instance::Model>> {
        Ok(instance::Entity::find()
            .filter(instance::Column::DeploymentId.eq(deployment_id))
            .order_by_asc(instance::Column::NodeId)
            .all(&self.db)
            .await?)
    }

    /// One node's instance.
    pub async fn instance(&self, deployment_id: &str, node_id: &str) -> ApiResult<instance::Model> {
        instance::Entity::find()
            .filter(instance::Column::DeploymentId.eq(deployment_id))
            .filter(instance::Column::NodeId.eq(node_id))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("an instance on node {node_id:?}")))
    }

    /// The nodes some deployment has an instance on.
    pub async fn nodes_with_instances(&self) -> ApiResult<Vec<String>> {
        let mut nodes: Vec<String> = instance::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|i| i.node_id)
            .collect();
        nodes.sort();
        nodes.dedup();
        Ok(nodes)
    }

    /// Every instance on a node, of any deployment.
    pub async fn instances_on(&self, node_id: &str) -> ApiResult<Vec<instance::Model>> {
        Ok(instance::Entity::find()
            .filter(instance::Column::NodeId.eq(node_id))
            .order_by_asc(instance::Column::DeploymentId)
            .all(&self.db)
            .await?)
    }

    /// An instance's recorded exits, newest first.
    pub async fn restarts(
        &self,
        deployment_id: &str,
        node_id: &str,
        limit: u64,
    ) -> ApiResult<Vec<deployment_restart::Model>> {
        Ok(deployment_restart::Entity::find()
            .filter(deployment_restart::Column::DeploymentId.eq(deployment_id))
            .filter(deployment_restart::Column::NodeId.eq(node_id))
            .order_by_desc(deployment_restart::Column::AtMs)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Rollouts of a deployment, newest first.
    pub async fn rollouts(
        &self,
        deployment_id: &str,
        limit: u64,
    ) -> ApiResult<Vec<rollout::Model>> {
        Ok(rollout::Entity::find()
            .filter(rollout::Column::DeploymentId.eq(deployment_id))
            .order_by_desc(rollout::Column::StartedMs)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The nodes a target chooses, with their rows.
    pub async fn preview(&self, target: &spec::Target) -> ApiResult<Vec<node::Model>> {
        let nodes = node::Entity::find()
            .order_by_asc(node::Column::Id)
            .all(&self.db)
            .await?;
        Ok(nodes
            .into_iter()
            .filter(|n| target.selects(&n.id, &node_labels(n)))
            .collect())
    }

    /// Makes a deployment and rolls out its first revision.
    pub async fn create(
        &self,
        name: &str,
        spec: DeploymentSpec,
        actor: &str,
    ) -> ApiResult<deployment::Model> {
        spec::check_name(name)?;
        spec::validate(&spec)?;
        if deployment::Entity::find()
            .filter(deployment::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(taken(name));
        }
        let now = now_ms();
        let id = uuid::Uuid::new_v4().simple().to_string();
        // A write first: SQLite's write lock from here to the commit (a read first would pin a
        // snapshot that another writer's commit makes stale, and the write would fail).
        let txn = self.db.begin().await?;
        let row = deployment::ActiveModel {
            id: Set(id.clone()),
            name: Set(name.to_owned()),
            latest_revision: Set(1),
            target_revision: Set(1),
            live_revision: Set(None),
            run_state: Set("running".into()),
            restart_requested_ms: Set(None),
            deleting: Set(false),
            created_by: Set(actor.to_owned()),
            created_ms: Set(now),
            updated_ms: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(|e| {
            let text = e.to_string().to_lowercase();
            if text.contains("unique") || text.contains("duplicate") {
                taken(name)
            } else {
                ApiError::Database(e)
            }
        })?;
        insert_revision(&txn, &id, 1, &spec, actor, "create", "created".into()).await?;
        start_rollout(&txn, &row, None, 1, &spec, "update", actor).await?;
        txn.commit().await?;
        self.changed(&id);
        Ok(row)
    }

    /// A new revision with `spec`; refused with `CONFLICT` when `expected_revision` is not the
    /// newest (someone else changed it meanwhile).
    pub async fn update(
        &self,
        id: &str,
        spec: DeploymentSpec,
        expected_revision: Option<i32>,
        actor: &str,
    ) -> ApiResult<deployment::Model> {
        spec::validate(&spec)?;
        let d = self.find(id).await?;
        if let Some(e) = expected_revision
            && e != d.latest_revision
        {
            return Err(ApiError::Conflict(format!(
                "deployment {:?} is at revision {} now, not {e}: reload and edit again",
                d.name, d.latest_revision
            )));
        }
        self.new_revision(&d, spec, "edit".into(), "update", actor)
            .await
    }

    /// A new revision copying revision `to`'s spec, rolled out like any change.
    pub async fn rollback(&self, id: &str, to: i32, actor: &str) -> ApiResult<deployment::Model> {
        let d = self.find(id).await?;
        let spec = self.spec(&d.id, to).await?;
        let cause = format!("rollback:{}->{to}", d.latest_revision);
        self.new_revision(&d, spec, cause, "rollback", actor).await
    }

    async fn new_revision(
        &self,
        d: &deployment::Model,
        spec: DeploymentSpec,
        cause: String,
        kind: &str,
        actor: &str,
    ) -> ApiResult<deployment::Model> {
        if d.deleting {
            return Err(ApiError::Conflict(format!(
                "deployment {:?} is being removed",
                d.name
            )));
        }
        let before = parse_spec(&current_revision(&self.db, &d.id, d.latest_revision).await?)?;
        let n = d.latest_revision + 1;
        let lines = spec::diff(&before, &spec);
        let summary = if lines.is_empty() {
            "no change".to_owned()
        } else {
            lines.join("\n")
        };
        // A write first (see `create`). Only the row as it was read may be changed: a
        // concurrent edit makes this update miss.
        let txn = self.db.begin().await?;
        let res = deployment::Entity::update_many()
            .col_expr(deployment::Column::LatestRevision, n.into())
            .col_expr(deployment::Column::TargetRevision, n.into())
            .col_expr(deployment::Column::UpdatedMs, now_ms().into())
            .filter(deployment::Column::Id.eq(&d.id))
            .filter(deployment::Column::LatestRevision.eq(d.latest_revision))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(ApiError::Conflict(format!(
                "deployment {:?} changed meanwhile: reload and edit again",
                d.name
            )));
        }
        insert_revision(&txn, &d.id, n, &spec, actor, &cause, summary).await?;
        let d = deployment::Entity::find_by_id(&d.id)
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("deployment {:?}", d.name)))?;
        start_rollout(&txn, &d, d.live_revision, n, &spec, kind, actor).await?;
        trim_revisions(&txn, &d).await?;
        txn.commit().await?;
        self.changed(&d.id);
        Ok(d)
    }

    /// Starts or stops a whole deployment (`node` None) or one node's instance.
    pub async fn set_running(&self, id: &str, node: Option<&str>, run: bool) -> ApiResult<()> {
        let d = self.find(id).await?;
        match node {
            None => {
                let mut m = d.into_active_model();
                m.run_state = Set(if run { "running" } else { "stopped" }.into());
                m.updated_ms = Set(now_ms());
                m.update(&self.db).await?;
                // Starting the deployment starts its stopped instances too.
                if run {
                    instance::Entity::update_many()
                        .col_expr(instance::Column::Stopped, false.into())
                        .filter(instance::Column::DeploymentId.eq(id))
                        .exec(&self.db)
                        .await?;
                }
            }
            Some(n) => {
                let mut m = self.instance(&d.id, n).await?.into_active_model();
                m.stopped = Set(!run);
                m.update(&self.db).await?;
                if run && d.run_state != "running" {
                    return Err(ApiError::Conflict(format!(
                        "deployment {:?} is stopped: start the deployment",
                        d.name
                    )));
                }
            }
        }
        self.changed(id);
        Ok(())
    }

    /// Restarts every instance (`node` None) or one.
    pub async fn restart(&self, id: &str, node: Option<&str>) -> ApiResult<()> {
        let d = self.find(id).await?;
        let now = now_ms();
        match node {
            None => {
                let mut m = d.clone().into_active_model();
                m.restart_requested_ms = Set(Some(now));
                m.update(&self.db).await?;
            }
            Some(n) => {
                let mut m = self.instance(&d.id, n).await?.into_active_model();
                m.restart_requested_ms = Set(Some(now));
                m.update(&self.db).await?;
            }
        }
        self.changed(&d.id);
        Ok(())
    }

    /// Takes one node out of a deployment (its container is removed) or puts it back.
    pub async fn set_excluded(&self, id: &str, node: &str, excluded: bool) -> ApiResult<()> {
        let d = self.find(id).await?;
        let mut m = self.instance(&d.id, node).await?.into_active_model();
        m.excluded = Set(excluded);
        m.update(&self.db).await?;
        self.changed(&d.id);
        Ok(())
    }

    /// Removes a deployment: its containers go first, then its rows.
    pub async fn remove(&self, id: &str) -> ApiResult<deployment::Model> {
        let d = self.find(id).await?;
        let txn = self.db.begin().await?;
        let mut m = d.clone().into_active_model();
        m.deleting = Set(true);
        m.update(&txn).await?;
        end_active_rollouts(
            &txn,
            &d.id,
            "superseded",
            Some("the deployment is being removed"),
        )
        .await?;
        txn.commit().await?;
        self.changed(&d.id);
        Ok(d)
    }

    /// Pauses the deployment's running rollout.
    pub async fn pause_rollout(&self, id: &str) -> ApiResult<rollout::Model> {
        self.move_rollout(id, "running", "paused", Some("paused by a user"))
            .await
    }

    /// Resumes a paused rollout at its batch (the batch's clock starts again).
    pub async fn resume_rollout(&self, id: &str) -> ApiResult<rollout::Model> {
        self.move_rollout(id, "paused", "running", None).await
    }

    async fn move_rollout(
        &self,
        id: &str,
        from: &str,
        to: &str,
        reason: Option<&str>,
    ) -> ApiResult<rollout::Model> {
        let d = self.find(id).await?;
        let r = rollout::Entity::find()
            .filter(rollout::Column::DeploymentId.eq(&d.id))
            .filter(rollout::Column::State.eq(from))
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                ApiError::Conflict(format!("deployment {:?} has no {from} rollout", d.name))
            })?;
        // Only as it was read: a rollout the driver ended meanwhile stays ended.
        let mut q = rollout::Entity::update_many()
            .col_expr(rollout::Column::State, to.into())
            .col_expr(rollout::Column::Reason, reason.map(str::to_owned).into())
            .filter(rollout::Column::Id.eq(&r.id))
            .filter(rollout::Column::State.eq(from));
        if to == "running" {
            q = q.col_expr(rollout::Column::BatchStartedMs, Some(now_ms()).into());
        }
        if q.exec(&self.db).await?.rows_affected != 1 {
            return Err(ApiError::Conflict(format!(
                "deployment {:?}'s rollout is no longer {from}",
                d.name
            )));
        }
        let r = rollout::Entity::find_by_id(&r.id)
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound("the rollout".into()))?;
        self.changed(&d.id);
        self.emit(DeploymentEventKind::Rollout, &d.id, None);
        Ok(r)
    }

    fn changed(&self, id: &str) {
        self.emit(DeploymentEventKind::Deployment, id, None);
        self.wake(Input::Deployment(id.to_owned()));
    }
}

async fn current_revision(
    db: &impl ConnectionTrait,
    deployment_id: &str,
    n: i32,
) -> ApiResult<revision::Model> {
    revision::Entity::find()
        .filter(revision::Column::DeploymentId.eq(deployment_id))
        .filter(revision::Column::Revision.eq(n))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("revision {n}")))
}

async fn insert_revision(
    db: &impl ConnectionTrait,
    deployment_id: &str,
    n: i32,
    spec: &DeploymentSpec,
    actor: &str,
    cause: &str,
    summary: String,
) -> ApiResult<()> {
    revision::ActiveModel {
        deployment_id: Set(deployment_id.to_owned()),
        revision: Set(n),
        spec: Set(serde_json::to_string(spec).map_err(|e| ApiError::Internal(e.to_string()))?),
        created_by: Set(actor.to_owned()),
        created_ms: Set(now_ms()),
        cause: Set(cause.to_owned()),
        summary: Set(summary),
        outcome: Set(None),
        outcome_reason: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

async fn trim_revisions(db: &impl ConnectionTrait, d: &deployment::Model) -> ApiResult<()> {
    let keep_from = i64::from(d.latest_revision) - KEEP_REVISIONS as i64;
    if keep_from <= 0 {
        return Ok(());
    }
    // Revisions a node is still on stay too.
    let mut keep: Vec<i32> = instance::Entity::find()
        .filter(instance::Column::DeploymentId.eq(&d.id))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|i| i.desired_revision.max(i.observed_revision))
        .collect();
    keep.push(d.target_revision);
    keep.extend(d.live_revision);
    let q = revision::Entity::delete_many()
        .filter(revision::Column::DeploymentId.eq(&d.id))
        .filter(revision::Column::Revision.lte(keep_from))
        .filter(revision::Column::Revision.is_not_in(keep));
    q.exec(db).await?;
    Ok(())
}

pub(super) async fn end_active_rollouts(
    db: &impl ConnectionTrait,
    deployment_id: &str,
    state: &str,
    reason: Option<&str>,
) -> ApiResult<()> {
    rollout::Entity::update_many()
        .col_expr(rollout::Column::State, state.into())
        .col_expr(rollout::Column::Reason, reason.map(str::to_owned).into())
        .col_expr(rollout::Column::EndedMs, Some(now_ms()).into())
        .filter(rollout::Column::DeploymentId.eq(deployment_id))
        .filter(rollout::Column::State.is_in(["running", "paused"]))
        .exec(db)
        .await?;
    Ok(())
}

/// The nodes `spec` chooses, each with its instance row made if missing; nodes no longer chosen
/// get no desired revision (their containers are removed).
pub(super) async fn sync_instances(
    db: &impl ConnectionTrait,
    d: &deployment::Model,
    spec: &DeploymentSpec,
) -> ApiResult<Vec<instance::Model>> {
    let nodes = node::Entity::find().all(db).await?;
    let chosen: Vec<&node::Model> = nodes
        .iter()
        .filter(|n| spec.target.selects(&n.id, &node_labels(n)))
        .collect();
    let existing: HashMap<String, instance::Model> = instance::Entity::find()
        .filter(instance::Column::DeploymentId.eq(&d.id))
        .all(db)
        .await?
        .into_iter()
        .map(|i| (i.node_id.clone(), i))
        .collect();
    let now = now_ms();
    // A node chosen later runs what has rolled out (what is rolling out reaches it at the end);
    // before anything has, it waits for its batch.
    let joining = Some(d.live_revision.unwrap_or(AWAITING));
    let mut out = Vec::new();
    for n in &chosen {
        match existing.get(&n.id) {
            Some(i) if i.desired_revision.is_some() => out.push(i.clone()),
            Some(i) => {
                // Only a row still without a revision: a concurrent rollout's choice stands.
                instance::Entity::update_many()
                    .col_expr(instance::Column::DesiredRevision, joining.into())
                    .filter(instance::Column::Id.eq(i.id))
                    .filter(instance::Column::DesiredRevision.is_null())
                    .exec(db)
                    .await?;
                if let Some(row) = instance::Entity::find_by_id(i.id).one(db).await? {
                    out.push(row);
                }
            }
            None => {
                let row = instance::ActiveModel {
                    deployment_id: Set(d.id.clone()),
                    node_id: Set(n.id.clone()),
                    desired_revision: Set(joining),
                    excluded: Set(false),
                    stopped: Set(false),
                    restart_requested_ms: Set(None),
                    container_id: Set(None),
                    container_name: Set(None),
                    observed_revision: Set(None),
                    state: Set("PENDING".into()),
                    reason: Set(None),
                    health: Set(None),
                    exit_code: Set(None),
                    oom_killed: Set(false),
                    restart_count: Set(0),
                    running_since_ms: Set(None),
                    failures: Set(0),
                    next_retry_ms: Set(None),
                    updated_ms: Set(now),
                    ..Default::default()
                };
                // Another writer may have made it meanwhile (Postgres would abort the
                // transaction on the conflict): then read that one.
                instance::Entity::insert(row)
                    .on_conflict(
                        OnConflict::columns([
                            instance::Column::DeploymentId,
                            instance::Column::NodeId,
                        ])
                        .do_nothing()
                        .to_owned(),
                    )
                    .exec_without_returning(db)
                    .await?;
                if let Some(r) = instance::Entity::find()
                    .filter(instance::Column::DeploymentId.eq(&d.id))
                    .filter(instance::Column::NodeId.eq(&n.id))
                    .one(db)
                    .await?
                {
                    out.push(r);
                }
            }
        }
    }
    let node_ids: std::collections::HashSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    for (node_id, i) in &existing {
        if chosen.iter().any(|n| &n.id == node_id) {
            continue;
        }
        if !node_ids.contains(node_id.as_str()) {
            // The node was removed: its engine is left alone (it may be gone).
            instance::Entity::delete_by_id(i.id).exec(db).await?;
        } else if i.desired_revision.is_some() {
            instance::Entity::update_many()
                .col_expr(
                    instance::Column::DesiredRevision,
                    Option::<i32>::None.into(),
                )
                .filter(instance::Column::Id.eq(i.id))
                .exec(db)
                .await?;
        }
    }
    Ok(out)
}

/// Starts rolling out revision `to` (in the caller's transaction): supersedes an active rollout,
/// splits the nodes whose container changes into batches and opens the first.
async fn start_rollout(
    db: &impl ConnectionTrait,
    d: &deployment::Model,
    from: Option<i32>,
    to: i32,
    spec: &DeploymentSpec,
    kind: &str,
    actor: &str,
) -> ApiResult<rollout::Model> {
    end_active_rollouts(
        db,
        &d.id,
        "superseded",
        Some("a newer revision replaced it"),
    )
    .await?;
    let instances = sync_instances(db, d, spec).await?;
    // The specs the nodes run now, to see whose container changes.
    let mut specs: HashMap<i32, DeploymentSpec> = HashMap::new();
    let mut changing = Vec::new();
    for i in &instances {
        let same = match i.desired_revision {
            Some(r) if r == to => true,
            Some(AWAITING) | None => false,
            Some(r) => {
                if let std::collections::hash_map::Entry::Vacant(e) = specs.entry(r) {
                    e.insert(parse_spec(&current_revision(db, &d.id, r).await?)?);
                }
                let old = &specs[&r];
                spec::spec_hash(&spec::effective(old, &i.node_id))
                    == spec::spec_hash(&spec::effective(spec, &i.node_id))
            }
        };
        if same || i.excluded {
            // Nothing changes on this node (or it is taken out): on the new revision at once.
            let mut m = i.clone().into_active_model();
            m.desired_revision = Set(Some(to));
            m.update(db).await?;
        } else {
            changing.push(i.node_id.clone());
        }
    }
    changing.sort();
    let batches: Vec<Vec<String>> = match spec.update.batch_size() {
        _ if changing.is_empty() => Vec::new(),
        None => vec![changing],
        Some(n) => changing.chunks(n).map(<[String]>::to_vec).collect(),
    };
    let now = now_ms();
    let done = batches.is_empty();
    let row = rollout::ActiveModel {
        id: Set(uuid::Uuid::new_v4().simple().to_string()),
        deployment_id: Set(d.id.clone()),
        kind: Set(kind.to_owned()),
        from_revision: Set(from),
        to_revision: Set(to),
        state: Set(if done { "succeeded" } else { "running" }.into()),
        batches: Set(serde_json::to_string(&batches).unwrap_or_else(|_| "[]".into())),
        current_batch: Set(0),
        batch_started_ms: Set((!done).then_some(now)),
        reason: Set(None),
        started_by: Set(actor.to_owned()),
        started_ms: Set(now),
        ended_ms: Set(done.then_some(now)),
    }
    .insert(db)
    .await?;
    if done {
        super::rollout::succeeded(db, d, to).await?;
    } else {
        super::rollout::open_batch(db, &d.id, &batches[0], to).await?;
    }
    Ok(row)
}
