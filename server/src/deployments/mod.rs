//! Container deployments: desired state (deployments, revisions, per-node overrides), a
//! level-triggered reconciler that makes each node's Docker engine hold what is wanted, and
//! rollouts that bring a new revision to the nodes batch by batch, gated on health, rolling back
//! on failure.
//!
//! The reconciler (this file's [`Reconciler`]) owns the set of workers, one per (deployment,
//! node), and the engines' reachability as last seen; it is fed through a bounded channel
//! ([`INBOX`]): a deployment changed, nodes changed, or "reread everything". Mutations never wait
//! for it: a full inbox turns into a resync, which rereads the database, so nothing is lost.
//! Every [`RESYNC`] it rereads everything anyway, and every [`ROLLOUT_TICK`] it moves rollouts
//! on. Killed at any point and started again, it loads what is wanted from the database and its
//! workers relist what the engines hold, so it converges to the same state. It is supervised
//! ([`crate::infra::supervise::supervise_owning`]): after a panic the next loop gets the same
//! inbox and the same workers (still at work: no second worker for an instance), and its first
//! pass rereads everything, so the input in hand at the panic is not needed.

pub mod engine;
pub mod events;
pub mod live;
pub mod plan;
pub mod rollout;
pub mod service;
pub mod spec;
pub mod worker;

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use entity::{deployment, deployment_instance as instance};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
pub use service::{DeploymentEvent, DeploymentEventKind, Deployments};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    access::audit::Audit,
    nodes::{self, docker::DockerAccess},
};

/// Inputs the reconciler's inbox holds before producers fall back to asking for a resync.
pub const INBOX: usize = 256;
/// How often everything is reread, whatever came in.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How often running rollouts are judged.
pub const ROLLOUT_TICK: Duration = Duration::from_millis(500);

/// What the reconciler is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// One deployment changed (a revision, a stop, a removal, a rollout step).
    Deployment(String),
    /// Nodes changed (joined, labelled, removed, a new endpoint).
    Nodes,
    /// Reread everything.
    Resync,
    /// A node's engine is reached again: its workers relist.
    Node(String),
    /// A node's engine said something happened to a container of this deployment there.
    Container {
        /// The deployment.
        deployment_id: String,
        /// The node.
        node_id: String,
    },
}

/// A node engine's reachability as the workers last saw it.
#[derive(Debug, Clone, Default)]
pub struct EngineStatus {
    /// Whether the last call reached it.
    pub reachable: bool,
    /// Why not, in words.
    pub reason: Option<String>,
    /// Since when it is as it is, ms.
    pub since_ms: i64,
    /// Failed calls in a row.
    pub attempts: u32,
}

/// What workers share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub svc: Deployments,
    pub access: DockerAccess,
    pub images: crate::images::Images,
    pub clients: engine::EngineClients,
    pub cluster: String,
    pub timeout: Duration,
    pub backoff_max: Duration,
    pub engines: Arc<RwLock<HashMap<String, EngineStatus>>>,
}

impl Shared {
    fn engine_down(&self, node_id: &str, reason: &str) {
        let mut map = self.engines.write().expect("engine status");
        let e = map.entry(node_id.to_owned()).or_default();
        if e.reachable || e.since_ms == 0 {
            e.since_ms = service::now_ms();
        }
        e.reachable = false;
        e.reason = Some(reason.to_owned());
        e.attempts += 1;
    }

    fn engine_up(&self, node_id: &str) {
        let mut map = self.engines.write().expect("engine status");
        let e = map.entry(node_id.to_owned()).or_default();
        if !e.reachable {
            e.since_ms = service::now_ms();
        }
        e.reachable = true;
        e.reason = None;
        e.attempts = 0;
    }
}

/// Settings of the reconciler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long one Docker call may take.
    pub docker_timeout: Duration,
    /// The longest wait between retries of an unreachable engine or a failed step.
    pub backoff_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            docker_timeout: nodes::docker::DOCKER_TIMEOUT,
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// The reconciler: started once per leader by [`Reconciler::run`].
pub struct Reconciler {
    svc: Deployments,
    inbox: mpsc::Receiver<Input>,
    /// One worker per instance, by (deployment, node).
    workers: HashMap<(String, String), WorkerHandle>,
    /// One engine-event watcher per node.
    sessions: HashMap<String, JoinHandle<()>>,
    /// Cancels the workers and watchers (at shutdown), made by the first run.
    workers_cancel: Option<CancellationToken>,
    access: DockerAccess,
    images: crate::images::Images,
    audit: Audit,
    nodes: nodes::Nodes,
    settings: Settings,
    engines: Arc<RwLock<HashMap<String, EngineStatus>>>,
}

/// The engines' reachability, for the API.
#[derive(Clone, Default)]
pub struct Engines(Arc<RwLock<HashMap<String, EngineStatus>>>);

impl Engines {
    /// A node's engine as last seen, if a worker has called it.
    pub fn get(&self, node_id: &str) -> Option<EngineStatus> {
        self.0.read().expect("engine status").get(node_id).cloned()
    }
}

/// Makes the service and its reconciler (which the caller spawns).
pub fn new(
    db: sea_orm::DatabaseConnection,
    access: DockerAccess,
    images: crate::images::Images,
    audit: Audit,
    nodes: nodes::Nodes,
    settings: Settings,
) -> (Deployments, Engines, Reconciler) {
    let (tx, rx) = mpsc::channel(INBOX);
    let svc = Deployments::new(db, tx);
    let engines = Engines::default();
    let reconciler = Reconciler {
        svc: svc.clone(),
        inbox: rx,
        workers: HashMap::new(),
        sessions: HashMap::new(),
        workers_cancel: None,
        access,
        images,
        audit,
        nodes,
        settings,
        engines: engines.0.clone(),
    };
    (svc, engines, reconciler)
}

struct WorkerHandle {
    wake: mpsc::Sender<()>,
    task: JoinHandle<()>,
}

impl Reconciler {
    /// Runs until `shutdown`: keeps a worker for every instance row and moves rollouts on.
    pub async fn run(&mut self, shutdown: CancellationToken) {
        let cluster = loop {
            match self.svc.cluster_id().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(error = e.log_message(), "no cluster id yet; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let shared = Shared {
            svc: self.svc.clone(),
            access: self.access.clone(),
            images: self.images.clone(),
            clients: engine::EngineClients::default(),
            cluster,
            timeout: self.settings.docker_timeout,
            backoff_max: self.settings.backoff_max,
            engines: self.engines.clone(),
        };
        let workers_cancel = self
            .workers_cancel
            .get_or_insert_with(|| shutdown.child_token())
            .clone();
        let mut node_events = self.nodes.subscribe();
        // An instance that changed may pass or fail its batch: judge at once, not at the tick.
        let mut own_events = self.svc.subscribe();
        let mut resync = tokio::time::interval(RESYNC);
        let mut tick = tokio::time::interval(ROLLOUT_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let todo = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = resync.tick() => Some(Input::Resync),
                _ = tick.tick() => {
                    match rollout::drive(&self.svc, &self.audit).await {
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = e.log_message(), "rollouts"),
                    }
                    None
                }
                i = self.inbox.recv() => i,
                e = own_events.recv() => {
                    if matches!(e, Ok(DeploymentEvent { kind: DeploymentEventKind::Instance, .. }))
                        && let Err(e) = rollout::drive(&self.svc, &self.audit).await
                    {
                        tracing::warn!(error = e.log_message(), "rollouts");
                    }
                    None
                }
                e = node_events.recv() => match e {
                    Ok(e) if matches!(e.kind, nodes::NodeEventKind::Heartbeat | nodes::NodeEventKind::Pending) => None,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(Input::Nodes),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
                },
            };
            let Some(input) = todo else { continue };
            if let Err(e) = self.handle(input, &shared, &workers_cancel).await {
                tracing::warn!(error = e.log_message(), "reconciler");
            }
        }
        workers_cancel.cancel();
        for (_, w) in self.workers.drain() {
            let _ = w.task.await;
        }
        for (_, t) in self.sessions.drain() {
            let _ = t.await;
        }
    }

    async fn handle(
        &mut self,
        input: Input,
        shared: &Shared,
        cancel: &CancellationToken,
    ) -> crate::error::ApiResult<()> {
        if matches!(input, Input::Deployment(_)) {
            crate::infra::supervise::panic_point("reconciler");
        }
        let workers = &mut self.workers;
        let sessions = &mut self.sessions;
        if let Input::Container {
            deployment_id,
            node_id,
        } = &input
        {
            if let Some(w) = workers.get(&(deployment_id.clone(), node_id.clone())) {
                let _ = w.wake.try_send(());
            }
            return Ok(());
        }
        if let Input::Node(node_id) = &input {
            for ((_, n), w) in workers.iter() {
                if n == node_id {
                    let _ = w.wake.try_send(());
                }
            }
            return Ok(());
        }
        let db = &self.svc.db;
        let deployments = match &input {
            Input::Deployment(id) => deployment::Entity::find_by_id(id)
                .one(db)
                .await?
                .into_iter()
                .collect(),
            _ => deployment::Entity::find().all(db).await?,
        };
        for d in deployments.iter().filter(|d| !d.deleting) {
            // One deployment that cannot be read holds back no other.
            let synced = async {
                let spec = self.svc.spec(&d.id, d.target_revision).await?;
                service::sync_instances(db, d, &spec).await
            };
            if let Err(e) = synced.await {
                tracing::warn!(
                    deployment = d.name,
                    error = e.log_message(),
                    "targets not synced"
                );
            }
        }
        let mut rows = instance::Entity::find();
        if let Input::Deployment(id) = &input {
            rows = rows.filter(instance::Column::DeploymentId.eq(id));
        }
        let rows = rows.all(db).await?;
        workers.retain(|_, w| !w.task.is_finished());
        sessions.retain(|_, t| !t.is_finished());
        // Every node with an engine is watched once any deployment exists: its watcher also
        // sweeps away containers of deployments removed while it was out of reach.
        let mut watched: Vec<String> = rows.iter().map(|i| i.node_id.clone()).collect();
        if !matches!(input, Input::Deployment(_)) && !deployments.is_empty() {
            watched.extend(
                entity::node::Entity::find()
                    .filter(entity::node::Column::DockerEndpoint.is_not_null())
                    .all(db)
                    .await?
                    .into_iter()
                    .map(|n| n.id),
            );
        }
        for node_id in watched {
            if let std::collections::hash_map::Entry::Vacant(slot) = sessions.entry(node_id) {
                let task = tokio::spawn(events::watch(
                    shared.clone(),
                    slot.key().clone(),
                    self.svc.inbox.clone(),
                    cancel.child_token(),
                ));
                slot.insert(task);
            }
        }
        for i in rows {
            let key = (i.deployment_id.clone(), i.node_id.clone());
            match workers.get(&key) {
                Some(w) => {
                    let _ = w.wake.try_send(());
                }
                None => {
                    let (tx, rx) = mpsc::channel(1);
                    let worker = worker::Worker::new(
                        shared.clone(),
                        key.0.clone(),
                        key.1.clone(),
                        rx,
                        cancel.child_token(),
                    );
                    let task = tokio::spawn(worker.run());
                    workers.insert(key, WorkerHandle { wake: tx, task });
                }
            }
        }
        // A deployment being removed whose instances are all gone is deleted.
        for d in deployments.iter().filter(|d| d.deleting) {
            self.svc.removed_instance(&d.id).await;
        }
        Ok(())
    }
}

impl Deployments {
    /// After an instance row went: a deployment being removed with none left is deleted.
    pub(crate) async fn removed_instance(&self, deployment_id: &str) {
        let res = async {
            let Some(d) = deployment::Entity::find_by_id(deployment_id)
                .one(&self.db)
                .await?
            else {
                return Ok::<_, sea_orm::DbErr>(false);
            };
            if !d.deleting {
                return Ok(false);
            }
            let left = instance::Entity::find()
                .filter(instance::Column::DeploymentId.eq(deployment_id))
                .one(&self.db)
                .await?;
            if left.is_some() {
                return Ok(false);
            }
            deployment::Entity::delete_by_id(deployment_id)
                .exec(&self.db)
                .await?;
            Ok(true)
        }
        .await;
        match res {
            Ok(true) => self.emit(DeploymentEventKind::Removed, deployment_id, None),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "removing a deployment"),
        }
    }
}
