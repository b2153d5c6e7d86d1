//! One worker per (deployment, node): it owns that instance's row's observed half (state,
//! container, health, restarts) and nothing else. Each round it reads what the node should run
//! from the database, lists what the node's engine has, asks the planner for one step, does it,
//! and goes round again until the planner says converged; then it sleeps until woken or until
//! its recheck is due. An unreachable engine or a failed step is retried with capped exponential
//! backoff, the reason kept on the instance. Killed at any point, a new worker relists and goes
//! on from what is there: the database holds only what is wanted.

use std::time::Duration;

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use entity::{deployment, deployment_instance as instance, deployment_restart, node};
use sea_orm::{
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::OnConflict,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Shared,
    engine::{self, Engine, EngineError, Identity},
    plan::{self, Desired, Status, Step},
    service::{DeploymentEventKind, now_ms},
    spec::{self, ContainerSpec, PullPolicy},
};

/// Restarts within [`CRASH_WINDOW_MS`] that make a crash loop.
const CRASH_RESTARTS: i64 = 3;
const CRASH_WINDOW_MS: i64 = 120_000;
/// Exits kept per instance.
const KEEP_EXITS: u64 = 50;
/// How long a pull may take.
const PULL_LIMIT: Duration = Duration::from_secs(600);
/// Recheck while something is moving, and when all is quiet.
const RECHECK_BUSY: Duration = Duration::from_secs(1);
const RECHECK_IDLE: Duration = Duration::from_secs(10);

/// Capped exponential backoff: 1 s, 2 s, 4 s … up to `max`, with ±10 % jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempts: u32,
    max: Duration,
}

impl Backoff {
    /// Starts at 1 s.
    pub fn new(max: Duration) -> Self {
        Backoff { attempts: 0, max }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        let base = Duration::from_secs(1u64 << self.attempts.min(16)).min(self.max);
        self.attempts += 1;
        let jitter = 0.9 + rand::random::<f64>() * 0.2;
        base.mul_f64(jitter).min(self.max)
    }

    /// Failed attempts in a row.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// What is wanted of an instance: its revision, taken out, stopped, the deployment's run state,
/// being removed, the newest restart asked for, and the node's engine endpoint and insecure mark.
type Wanted = (
    Option<i32>,
    bool,
    bool,
    String,
    bool,
    Option<i64>,
    Option<(Option<String>, bool)>,
);

/// What a round came to.
enum Round {
    /// A step was done: go again at once.
    Progress,
    /// Converged: sleep this long unless woken.
    Idle(Duration),
    /// A failure: try again after this backoff unless woken.
    Retry(Duration),
    /// The instance or its deployment is gone: the worker ends.
    Done,
}

/// The worker of one instance.
pub(super) struct Worker {
    pub shared: Shared,
    pub deployment_id: String,
    pub node_id: String,
    pub wake: mpsc::Receiver<()>,
    pub cancel: CancellationToken,
    backoff: Backoff,
    /// The last exit recorded, so one exit is read once.
    last_exit: Option<(String, i64)>,
    /// Containers this worker stopped, with when (leader ms, from and until): their exits then
    /// are Trellis's own, not crashes.
    our_stops: std::collections::HashMap<String, (i64, i64)>,
    /// The node's clock minus the leader's, ms: Docker's times are the node's.
    offset_ms: i64,
    /// The node as this round read it.
    node: Option<node::Model>,
}

/// What was seen of the desired container.
struct Seen {
    id: String,
    name: String,
    status: Status,
    health: Option<String>,
    exit_code: Option<i64>,
    oom_killed: bool,
    restart_count: i64,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
}

fn parse_time(t: Option<&str>) -> Option<i64> {
    let t = t?;
    let ms = chrono::DateTime::parse_from_rfc3339(t)
        .ok()?
        .timestamp_millis();
    // Docker says 0001-01-01 for "never".
    (ms > 0).then_some(ms)
}

fn seen(c: &ContainerInspectResponse) -> Seen {
    let state = c.state.clone().unwrap_or_default();
    Seen {
        id: c.id.clone().unwrap_or_default(),
        name: c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        status: state
            .status
            .map_or(Status::Exited, |s| Status::parse(s.as_ref())),
        health: state.health.and_then(|h| h.status).and_then(|s| match s {
            HealthStatusEnum::HEALTHY => Some("healthy".to_owned()),
            HealthStatusEnum::UNHEALTHY => Some("unhealthy".to_owned()),
            HealthStatusEnum::STARTING => Some("starting".to_owned()),
            _ => None,
        }),
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        restart_count: c.restart_count.unwrap_or(0),
        started_ms: parse_time(state.started_at.as_deref()),
        finished_ms: parse_time(state.finished_at.as_deref()),
    }
}

/// The observed half of an instance row, compared before writing (write only on change).
#[derive(Debug, Clone, PartialEq, Default)]
struct Observation {
    state: String,
    reason: Option<String>,
    container_id: Option<String>,
    container_name: Option<String>,
    observed_revision: Option<i32>,
    health: Option<String>,
    exit_code: Option<i64>,
    oom_killed: bool,
    restart_count: i64,
    running_since_ms: Option<i64>,
    failures: i32,
    next_retry_ms: Option<i64>,
}

impl Observation {
    fn of(i: &instance::Model) -> Self {
        Observation {
            state: i.state.clone(),
            reason: i.reason.clone(),
            container_id: i.container_id.clone(),
            container_name: i.container_name.clone(),
            observed_revision: i.observed_revision,
            health: i.health.clone(),
            exit_code: i.exit_code,
            oom_killed: i.oom_killed,
            restart_count: i.restart_count,
            running_since_ms: i.running_since_ms,
            failures: i.failures,
            next_retry_ms: i.next_retry_ms,
        }
    }
}

impl Worker {
    pub(super) fn new(
        shared: Shared,
        deployment_id: String,
        node_id: String,
        wake: mpsc::Receiver<()>,
        cancel: CancellationToken,
    ) -> Self {
        let max = shared.backoff_max;
        Worker {
            shared,
            deployment_id,
            node_id,
            wake,
            cancel,
            backoff: Backoff::new(max),
            last_exit: None,
            our_stops: std::collections::HashMap::new(),
            offset_ms: 0,
            node: None,
        }
    }

    /// Runs until the instance is gone or the worker is cancelled.
    pub(super) async fn run(mut self) {
        loop {
            let wait = match self.round().await {
                Ok(Round::Progress) => continue,
                Ok(Round::Done) => return,
                Ok(Round::Idle(d)) => {
                    self.backoff.reset();
                    d
                }
                Ok(Round::Retry(d)) => {
                    // Backing off: a wake cuts the wait short only when what is wanted changed.
                    let deadline = tokio::time::Instant::now() + d;
                    let wanted = self.wanted_now().await;
                    loop {
                        tokio::select! {
                            () = self.cancel.cancelled() => return,
                            w = self.wake.recv() => {
                                if w.is_none() {
                                    return;
                                }
                                if self.wanted_now().await != wanted {
                                    break;
                                }
                            }
                            () = tokio::time::sleep_until(deadline) => break,
                        }
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(
                        deployment = self.deployment_id,
                        node = self.node_id,
                        error = e.log_message(),
                        "deployment worker"
                    );
                    self.backoff.next_wait()
                }
            };
            tokio::select! {
                () = self.cancel.cancelled() => return,
                w = self.wake.recv() => if w.is_none() { return },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// What is wanted of this instance now, to tell whether a wake changes anything.
    async fn wanted_now(&self) -> Option<Wanted> {
        let i = self.instance().await.ok()??;
        let d = deployment::Entity::find_by_id(&self.deployment_id)
            .one(&self.shared.svc.db)
            .await
            .ok()??;
        // A node given another endpoint, or marked insecure, is worth trying at once too.
        let n = node::Entity::find_by_id(&self.node_id)
            .one(&self.shared.svc.db)
            .await
            .ok()
            .flatten()
            .map(|n| (n.docker_endpoint, n.docker_insecure));
        Some((
            i.desired_revision,
            i.excluded,
            i.stopped,
            d.run_state,
            d.deleting,
            d.restart_requested_ms.max(i.restart_requested_ms),
            n,
        ))
    }

    async fn instance(&self) -> crate::error::ApiResult<Option<instance::Model>> {
        Ok(instance::Entity::find()
            .filter(instance::Column::DeploymentId.eq(&self.deployment_id))
            .filter(instance::Column::NodeId.eq(&self.node_id))
            .one(&self.shared.svc.db)
            .await?)
    }

    async fn save(&self, i: &instance::Model, o: Observation) -> crate::error::ApiResult<()> {
        if Observation::of(i) == o {
            return Ok(());
        }
        let mut m = i.clone().into_active_model();
        m.state = Set(o.state);
        m.reason = Set(o.reason);
        m.container_id = Set(o.container_id);
        m.container_name = Set(o.container_name);
        m.observed_revision = Set(o.observed_revision);
        m.health = Set(o.health);
        m.exit_code = Set(o.exit_code);
        m.oom_killed = Set(o.oom_killed);
        m.restart_count = Set(o.restart_count);
        m.running_since_ms = Set(o.running_since_ms);
        m.failures = Set(o.failures);
        m.next_retry_ms = Set(o.next_retry_ms);
        m.updated_ms = Set(now_ms());
        // Only the observed half is written: what is wanted may have changed meanwhile.
        instance::Entity::update(m)
            .exec(&self.shared.svc.db)
            .await?;
        self.shared.svc.emit(
            DeploymentEventKind::Instance,
            &self.deployment_id,
            Some(&self.node_id),
        );
        Ok(())
    }

    /// Marks the instance with a state and reason that came from a failure, and backs off.
    async fn trouble(
        &mut self,
        i: &instance::Model,
        state: &str,
        reason: String,
    ) -> crate::error::ApiResult<Round> {
        // What is wanted may have changed while the step ran (a rollout went on, or back): a
        // failure of the old wish is not the new one's, so look again at once.
        if let Some(now) = self.instance().await?
            && (now.desired_revision != i.desired_revision || now.excluded != i.excluded)
        {
            return Ok(Round::Progress);
        }
        let wait = self.backoff.next_wait();
        let mut o = Observation::of(i);
        o.state = state.into();
        o.reason = Some(reason);
        o.failures = i32::try_from(self.backoff.attempts()).unwrap_or(i32::MAX);
        o.next_retry_ms = Some(now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        self.save(i, o).await?;
        Ok(Round::Retry(wait))
    }

    async fn round(&mut self) -> crate::error::ApiResult<Round> {
        let db = &self.shared.svc.db;
        let Some(i) = self.instance().await? else {
            return Ok(Round::Done);
        };
        let Some(d) = deployment::Entity::find_by_id(&self.deployment_id)
            .one(db)
            .await?
        else {
            return Ok(Round::Done);
        };
        let wanted = match (d.deleting, i.excluded, i.desired_revision) {
            (false, false, Some(r)) if r != super::service::AWAITING => {
                let spec = self.shared.svc.spec(&d.id, r).await?;
                let keep_old = self.rollout_open(&d.id).await?;
                Some((
                    r,
                    spec::effective(&spec, &self.node_id),
                    spec.update.order,
                    keep_old,
                ))
            }
            _ => None,
        };
        let Some(node) = node::Entity::find_by_id(&self.node_id).one(db).await? else {
            // The node was removed: its engine is left alone, its instance goes.
            instance::Entity::delete_by_id(i.id).exec(db).await?;
            self.shared
                .svc
                .emit(DeploymentEventKind::Instance, &d.id, Some(&self.node_id));
            return Ok(Round::Done);
        };
        self.offset_ms = node.clock_offset_ms.unwrap_or(0);
        self.node = Some(node.clone());
        if node.docker_endpoint.is_none() {
            let mut o = Observation::of(&i);
            o.state = "NO_ENGINE".into();
            o.reason = Some(format!(
                "node {:?} announced no Docker engine (start its agent with --docker-endpoint)",
                node.id
            ));
            if d.deleting || i.desired_revision.is_none() {
                // Nothing can be there to remove: the instance goes.
                instance::Entity::delete_by_id(i.id).exec(db).await?;
                self.shared.svc.removed_instance(&d.id).await;
                return Ok(Round::Done);
            }
            self.save(&i, o).await?;
            return Ok(Round::Idle(RECHECK_IDLE));
        }
        let engine = match self
            .shared
            .clients
            .get(&self.shared.access, &node, self.shared.timeout)
            .await
        {
            Ok(e) => e,
            Err(e) => return self.engine_trouble(&i, e).await,
        };
        match self.converge(&engine, &d, &i, wanted).await {
            Ok(r) => Ok(r),
            Err(e) => self.engine_trouble(&i, e).await,
        }
    }

    async fn engine_trouble(
        &mut self,
        i: &instance::Model,
        e: EngineError,
    ) -> crate::error::ApiResult<Round> {
        let state = match e {
            EngineError::Unreachable(_) => {
                self.shared.clients.forget(&self.node_id);
                self.shared.engine_down(&self.node_id, &e.public());
                "UNREACHABLE"
            }
            EngineError::Foreign(_) => "CONFLICT",
            _ => "FAILED",
        };
        self.trouble(i, state, e.public()).await
    }

    async fn rollout_open(&self, deployment_id: &str) -> crate::error::ApiResult<bool> {
        Ok(entity::rollout::Entity::find()
            .filter(entity::rollout::Column::DeploymentId.eq(deployment_id))
            .filter(entity::rollout::Column::State.is_in(["running", "paused"]))
            .one(&self.shared.svc.db)
            .await?
            .is_some())
    }

    async fn converge(
        &mut self,
        engine: &Engine,
        d: &deployment::Model,
        i: &instance::Model,
        wanted: Option<(i32, ContainerSpec, spec::UpdateOrder, bool)>,
    ) -> Result<Round, EngineError> {
        let listed = engine.list_owned(&self.shared.cluster, Some(&d.id)).await?;
        self.shared.engine_up(&self.node_id);
        let observed: Vec<plan::Observed> = listed.iter().map(|l| l.observed.clone()).collect();
        let Some((revision, spec, order, keep_old)) = wanted else {
            let step = plan::plan(None, &observed, None);
            if step == Step::Converged && !d.deleting && i.desired_revision.is_some() {
                // Waiting for its batch, or taken out by a user: no container, the instance stays.
                let mut o = Observation::of(i);
                (o.state, o.reason) = if i.excluded {
                    (
                        "EXCLUDED".into(),
                        Some("taken out on this node by a user".into()),
                    )
                } else {
                    (
                        "PENDING".into(),
                        Some("waiting for its rollout batch".into()),
                    )
                };
                o.container_id = None;
                o.container_name = None;
                o.health = None;
                o.running_since_ms = None;
                self.save(i, o).await.map_err(db_err)?;
                return Ok(Round::Idle(RECHECK_IDLE));
            }
            if step == Step::Converged {
                // Only as it was read: a row given a revision again meanwhile stays.
                let mut gone =
                    instance::Entity::delete_many().filter(instance::Column::Id.eq(i.id));
                if !d.deleting {
                    gone = gone.filter(instance::Column::DesiredRevision.is_null());
                }
                let res = gone.exec(&self.shared.svc.db).await.map_err(db_err)?;
                if res.rows_affected == 0 {
                    return Ok(Round::Progress);
                }
                self.shared
                    .svc
                    .emit(DeploymentEventKind::Instance, &d.id, Some(&self.node_id));
                self.shared.svc.removed_instance(&d.id).await;
                return Ok(Round::Done);
            }
            let mut o = Observation::of(i);
            o.state = "REMOVING".into();
            o.reason = None;
            self.save(i, o).await.map_err(db_err)?;
            self.act(engine, &step, None, d, revision_of(i), &spec_for_stop(i))
                .await?;
            return Ok(Round::Progress);
        };
        let hash = spec::spec_hash(&spec);
        let current = observed.iter().find(|o| o.hash == hash);
        let inspected = match current {
            Some(c) => engine.inspect(&c.id).await?,
            None => None,
        };
        let offset = self.offset_ms;
        let seen = inspected.as_ref().map(seen).map(|mut s| {
            // Docker's times are the node's clock: on the leader's from here on.
            s.started_ms = s.started_ms.map(|t| t - offset);
            s.finished_ms = s.finished_ms.map(|t| t - offset);
            s
        });
        let drift = inspected.as_ref().and_then(|c| engine::drift(&spec, c));
        let now = now_ms();
        let run = d.run_state == "running" && !i.stopped;
        let restart_after = d.restart_requested_ms.max(i.restart_requested_ms);
        let desired = Desired {
            hash: hash.clone(),
            run,
            restart_due: match (restart_after, seen.as_ref().and_then(|s| s.started_ms)) {
                (Some(asked), Some(started)) => asked > started,
                _ => false,
            },
            may_start: i.next_retry_ms.is_none_or(|t| now >= t),
            order,
            keep_old,
        };
        if let Some(s) = &seen {
            self.record_exit(engine, d, revision, s).await;
        }
        let step = plan::plan(Some(&desired), &observed, drift);
        if step == Step::Converged || step == Step::Wait {
            let o = self.observe(d, i, revision, seen.as_ref(), &desired).await;
            let busy = o.state != "RUNNING" && o.state != "HEALTHY" && o.state != "STOPPED";
            self.save(i, o).await.map_err(db_err)?;
            return Ok(Round::Idle(if busy || keep_old {
                RECHECK_BUSY
            } else {
                RECHECK_IDLE
            }));
        }
        if let Some(why) = drift {
            tracing::info!(
                deployment = d.name,
                node = self.node_id,
                why,
                "container changed by hand: replacing it"
            );
            let mut o = Observation::of(i);
            o.reason = Some(format!("changed by hand ({why}): replacing the container"));
            self.save(i, o).await.map_err(db_err)?;
        }
        if let Step::Start(_) = step
            && seen
                .as_ref()
                .is_some_and(|s| s.finished_ms.is_some() && !self.ours(&s.id, s.finished_ms))
        {
            // Starting again after a crash: the next one waits longer (2ⁿ s, at most 5 min).
            let mut o = Observation::of(i);
            o.failures = i.failures.saturating_add(1);
            let wait_s = 1i64 << o.failures.clamp(0, 8);
            o.next_retry_ms = Some(now + wait_s.min(300) * 1000);
            self.save(i, o).await.map_err(db_err)?;
        }
        self.act(engine, &step, Some((&spec, &hash)), d, revision, &spec)
            .await?;
        Ok(Round::Progress)
    }

    /// Does one step.
    async fn act(
        &mut self,
        engine: &Engine,
        step: &Step,
        make: Option<(&ContainerSpec, &str)>,
        d: &deployment::Model,
        revision: i32,
        spec: &ContainerSpec,
    ) -> Result<(), EngineError> {
        let grace = spec::stop_grace(spec);
        let res = match step {
            Step::Converged | Step::Wait => return Ok(()),
            Step::Start(id) => engine.start(id).await,
            Step::Unpause(id) => engine.unpause(id).await,
            Step::Stop(id) => self.stopping(id, engine.stop(id, grace)).await,
            Step::Restart(id) => self.stopping(id, engine.restart(id, grace)).await,
            Step::Remove(id) => {
                self.stopping(id, engine.stop(id, grace)).await?;
                self.our_stops.remove(id);
                engine.remove(id).await
            }
            Step::Create => {
                let Some((spec, hash)) = make else {
                    return Ok(());
                };
                return self.create(engine, d, revision, spec, hash).await;
            }
        };
        match res {
            // Gone between the list and the call: the next round relists.
            Err(EngineError::NotFound) => Ok(()),
            r => r,
        }
    }

    /// Runs a stop of `id`, remembering when: the exit it causes is not a crash.
    async fn stopping(
        &mut self,
        id: &str,
        stop: impl Future<Output = Result<(), EngineError>>,
    ) -> Result<(), EngineError> {
        let from = now_ms();
        let res = stop.await;
        self.our_stops
            .insert(id.to_owned(), (from - 1000, now_ms() + 1000));
        // Only the newest few matter.
        if self.our_stops.len() > 16
            && let Some(k) = self
                .our_stops
                .iter()
                .min_by_key(|(_, (f, _))| *f)
                .map(|(k, _)| k.clone())
        {
            self.our_stops.remove(&k);
        }
        res
    }

    /// Whether an exit of `id` at `at` (leader ms) came from a stop of ours.
    fn ours(&self, id: &str, at: Option<i64>) -> bool {
        match (self.our_stops.get(id), at) {
            (Some((from, until)), Some(t)) => (*from..=*until).contains(&t),
            _ => false,
        }
    }

    async fn create(
        &mut self,
        engine: &Engine,
        d: &deployment::Model,
        revision: i32,
        spec: &ContainerSpec,
        hash: &str,
    ) -> Result<(), EngineError> {
        let name = engine::container_name(&d.name, &self.node_id, hash);
        let cluster = self.shared.cluster.clone();
        let id = Identity {
            cluster: &cluster,
            deployment_id: &d.id,
            deployment_name: &d.name,
            node_id: &self.node_id,
            revision,
            hash,
        };
        let must_pull = match spec.pull {
            PullPolicy::Always | PullPolicy::IfMissing => {
                // Only a missing image is checked for room: with `ALWAYS`, layers the node has
                // already are not downloaded again.
                let missing = !engine.has_image(&spec.image).await?;
                if missing {
                    self.shared
                        .images
                        .check_pull(&self.node_id, &spec.image)
                        .await?;
                }
                missing || spec.pull == PullPolicy::Always
            }
            PullPolicy::Sideload => {
                let Some(node) = self.node.clone() else {
                    return Err(EngineError::Failed(format!(
                        "node {:?} is not known",
                        self.node_id
                    )));
                };
                if !self.shared.images.has_same(&node, &spec.image).await? {
                    self.note_state(
                        d,
                        "LOADING",
                        Some(format!(
                            "loading {} from the leader's Docker engine",
                            spec.image
                        )),
                    )
                    .await;
                    self.shared
                        .images
                        .ensure(&node, &spec.image, &format!("deployment {}", d.name))
                        .await?;
                }
                false
            }
            PullPolicy::Never => {
                if !engine.has_image(&spec.image).await? {
                    // An app built on its nodes: this node (one that joined its target after
                    // the build, or lost the image) builds its own.
                    self.note_state(
                        d,
                        "BUILDING",
                        Some(format!("building {} on this node", spec.image)),
                    )
                    .await;
                    match self
                        .shared
                        .images
                        .build_on_node(&self.node_id, &spec.image)
                        .await
                    {
                        Some(Ok(())) => {}
                        Some(Err(e)) => return Err(EngineError::Failed(e)),
                        None => {
                            return Err(EngineError::Failed(format!(
                                "image {} is not on node {:?} (pull policy never: load it there)",
                                spec.image, self.node_id
                            )));
                        }
                    }
                }
                false
            }
        };
        if must_pull {
            self.note_state(d, "PULLING", Some(format!("pulling {}", spec.image)))
                .await;
            let credentials = self.shared.images.pull_credentials(&spec.image).await;
            engine.pull(&spec.image, PULL_LIMIT, credentials).await?;
        }
        self.note_state(d, "CREATING", None).await;
        match engine.create(&name, engine::create_body(spec, &id)).await {
            Ok(_) => Ok(()),
            Err(EngineError::Conflict) => {
                // The name is taken. Ours (a create whose answer was lost): the next round adopts
                // it. Not ours: never touched.
                let other = engine.inspect(&name).await?;
                let ours = other
                    .as_ref()
                    .and_then(|c| c.config.as_ref())
                    .and_then(|c| c.labels.as_ref())
                    .is_some_and(|l| {
                        // Ours only with this cluster's, deployment's and node's labels: a
                        // leftover of a removed deployment is the sweep's, never adopted.
                        l.get(engine::CLUSTER) == Some(&cluster)
                            && l.get(engine::DEPLOYMENT) == Some(&d.id)
                            && l.get(engine::NODE) == Some(&self.node_id)
                    });
                if ours {
                    Ok(())
                } else {
                    Err(EngineError::Foreign(format!(
                        "a container not made by Trellis holds the name {name} on node {:?}",
                        self.node_id
                    )))
                }
            }
            Err(EngineError::NotFound) => Err(EngineError::Failed(format!(
                "image {} is not on node {:?}",
                spec.image, self.node_id
            ))),
            Err(e) => Err(e),
        }
    }

    async fn note_state(&self, d: &deployment::Model, state: &str, reason: Option<String>) {
        if let Ok(Some(i)) = self.instance().await {
            let mut o = Observation::of(&i);
            o.state = state.into();
            o.reason = reason;
            if let Err(e) = self.save(&i, o).await {
                tracing::warn!(
                    deployment = d.name,
                    error = e.log_message(),
                    "instance state"
                );
            }
        }
    }

    /// Records the container's last exit once (a restart by Docker's policy, a crash, a stop).
    async fn record_exit(
        &mut self,
        engine: &Engine,
        d: &deployment::Model,
        revision: i32,
        s: &Seen,
    ) {
        let Some(at) = s.finished_ms else { return };
        let key = (s.id.clone(), at);
        if self.last_exit.as_ref() == Some(&key) {
            return;
        }
        self.last_exit = Some(key);
        // Every exit but those our own stops caused: a crash, the OOM killer, a program that
        // ended by itself, a stop by hand.
        if self.ours(&s.id, Some(at)) {
            return;
        }
        let tail = engine.log_tail(&s.id, 20).await.unwrap_or_default();
        let row = deployment_restart::ActiveModel {
            deployment_id: Set(d.id.clone()),
            node_id: Set(self.node_id.clone()),
            revision: Set(revision),
            container_id: Set(s.id.clone()),
            at_ms: Set(at),
            exit_code: Set(s.exit_code),
            oom_killed: Set(s.oom_killed),
            log_tail: Set(tail),
            ..Default::default()
        };
        let res = deployment_restart::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    deployment_restart::Column::ContainerId,
                    deployment_restart::Column::AtMs,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&self.shared.svc.db)
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not record a container's exit");
        }
        // Keep the newest exits of each instance only.
        let old = deployment_restart::Entity::find()
            .filter(deployment_restart::Column::DeploymentId.eq(&d.id))
            .filter(deployment_restart::Column::NodeId.eq(&self.node_id))
            .order_by_desc(deployment_restart::Column::AtMs)
            .offset(KEEP_EXITS)
            .limit(1)
            .one(&self.shared.svc.db)
            .await;
        if let Ok(Some(cut)) = old {
            let _ = deployment_restart::Entity::delete_many()
                .filter(deployment_restart::Column::DeploymentId.eq(&d.id))
                .filter(deployment_restart::Column::NodeId.eq(&self.node_id))
                .filter(deployment_restart::Column::AtMs.lte(cut.at_ms))
                .exec(&self.shared.svc.db)
                .await;
        }
    }

    /// The instance's observed state from what the engine showed.
    async fn observe(
        &self,
        d: &deployment::Model,
        i: &instance::Model,
        revision: i32,
        s: Option<&Seen>,
        desired: &Desired,
    ) -> Observation {
        let mut o = Observation::of(i);
        o.next_retry_ms = i.next_retry_ms.filter(|t| *t > now_ms());
        let Some(s) = s else {
            o.state = "PENDING".into();
            return o;
        };
        let new_container = i.container_id.as_deref() != Some(s.id.as_str());
        o.container_id = Some(s.id.clone());
        o.container_name = Some(s.name.clone());
        o.observed_revision = Some(revision);
        o.health = s.health.clone();
        o.exit_code = s.exit_code.filter(|_| s.finished_ms.is_some());
        o.oom_killed = s.oom_killed;
        o.restart_count = s.restart_count;
        if new_container {
            o.running_since_ms = None;
        }
        let recent = self.recent_exits(d, s).await;
        let last_words = |o: &Observation| {
            let code = o
                .exit_code
                .map_or_else(String::new, |c| format!("exited with code {c}"));
            let oom = if o.oom_killed {
                ", killed for want of memory"
            } else {
                ""
            };
            format!(
                "{code}{oom}{}",
                recent
                    .1
                    .as_deref()
                    .map(|t| format!("; last lines: {}", t.trim()))
                    .unwrap_or_default()
            )
        };
        match s.status {
            Status::Running => {
                let was_up = matches!(
                    i.state.as_str(),
                    "RUNNING" | "HEALTHY" | "STARTING" | "UNHEALTHY" | "CRASH_LOOP"
                );
                if o.running_since_ms.is_none() || !was_up || i.restart_count != s.restart_count {
                    o.running_since_ms = Some(now_ms());
                }
                // A minute up without an exit ends a crash backoff.
                if o.running_since_ms.is_some_and(|t| now_ms() - t >= 60_000) {
                    o.failures = 0;
                }
                o.state = match s.health.as_deref() {
                    Some("healthy") => "HEALTHY",
                    Some("unhealthy") => "UNHEALTHY",
                    Some(_) => "STARTING",
                    None => "RUNNING",
                }
                .into();
                o.reason = (o.state == "UNHEALTHY").then(|| "the health check fails".to_owned());
                if recent.0 >= CRASH_RESTARTS {
                    o.state = "CRASH_LOOP".into();
                    o.reason = Some(format!(
                        "{} restarts in 2 min; {}",
                        recent.0,
                        last_words(&o)
                    ));
                }
            }
            Status::Restarting => {
                o.running_since_ms = None;
                o.state = if recent.0 >= CRASH_RESTARTS {
                    "CRASH_LOOP"
                } else {
                    "RESTARTING"
                }
                .into();
                o.reason = Some(format!(
                    "restarted {} time(s); {}",
                    s.restart_count,
                    last_words(&o)
                ));
            }
            Status::Paused => {
                o.state = "PAUSED".into();
                o.reason = Some("paused on the engine".into());
            }
            _ if !desired.run => {
                o.running_since_ms = None;
                o.state = "STOPPED".into();
                o.reason = None;
            }
            _ => {
                o.running_since_ms = None;
                let crashed = s.finished_ms.is_some() && s.exit_code.unwrap_or(0) != 0;
                o.state = if recent.0 >= CRASH_RESTARTS {
                    "CRASH_LOOP"
                } else if crashed {
                    "EXITED"
                } else {
                    "STARTING"
                }
                .into();
                o.reason = crashed.then(|| last_words(&o));
            }
        }
        o
    }

    /// Exits of this instance's container in the crash window, and the newest one's log tail.
    async fn recent_exits(&self, d: &deployment::Model, s: &Seen) -> (i64, Option<String>) {
        let since = now_ms() - CRASH_WINDOW_MS;
        let rows = deployment_restart::Entity::find()
            .filter(deployment_restart::Column::DeploymentId.eq(&d.id))
            .filter(deployment_restart::Column::NodeId.eq(&self.node_id))
            .filter(deployment_restart::Column::ContainerId.eq(&s.id))
            .filter(deployment_restart::Column::AtMs.gte(since))
            .all(&self.shared.svc.db)
            .await
            .unwrap_or_default();
        let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let tail = rows.into_iter().max_by_key(|r| r.at_ms).map(|r| {
            let lines: Vec<&str> = r.log_tail.lines().collect();
            lines[lines.len().saturating_sub(3)..].join(" | ")
        });
        (count, tail)
    }
}

fn db_err(e: impl std::fmt::Debug) -> EngineError {
    tracing::warn!(error = ?e, "database error in a deployment worker");
    EngineError::Failed("the leader's database failed; retrying".into())
}

fn revision_of(i: &instance::Model) -> i32 {
    i.observed_revision.unwrap_or(0)
}

fn spec_for_stop(_i: &instance::Model) -> ContainerSpec {
    ContainerSpec::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(60));
        let secs: Vec<u64> = (0..9)
            .map(|_| b.next_wait().as_secs_f64().round() as u64)
            .collect();
        // ±10 % jitter around 1, 2, 4 … 60.
        let want = [1, 2, 4, 8, 16, 32, 60, 60, 60];
        for (got, want) in secs.iter().zip(want) {
            let (lo, hi) = (
                (want as f64 * 0.9).floor() as u64,
                (want as f64 * 1.1).ceil() as u64,
            );
            assert!((lo..=hi).contains(got), "{secs:?}");
        }
        assert_eq!(b.attempts(), 9);
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(1100));
    }
}
