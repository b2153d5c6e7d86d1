//! Images with no registry and no internet: the leader's own Docker engine is the source, and
//! images go from it into nodes' engines by sideload ([`sideload`]), after a disk check
//! ([`disk`]); images no deployment needs any more are pruned ([`prune`]).
//!
//! The [`Images`] service owns the transfers under way: at most one per (node, image) at a time
//! (a second ask joins the first), at most `sideload_parallel` moving at once leader-wide (a
//! semaphore), each recorded in `image_transfer` with its bytes as it goes and announced on a
//! bounded broadcast. A transfer belongs to the task that runs it; a leader that stops mid-way
//! marks it failed at its next start ([`Images::recover`]) and whoever wanted the image asks
//! again (the reconciler does so by itself).

pub mod apps;
pub mod build;
pub mod bundles;
pub mod disk;
pub mod manifest;
pub mod prune;
pub mod registry;
pub mod sideload;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use bollard::Docker;
use entity::{image_transfer as transfer, node};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use tokio::sync::{Semaphore, broadcast, watch};

use crate::{
    deployments::engine::{self, EngineClients, EngineError},
    error::{ApiError, ApiResult},
    nodes::docker::DockerAccess,
};

/// Transfer events a slow subscriber may fall behind by before it is told to resync.
pub const EVENTS: usize = 256;
/// How often a running transfer's row and subscribers hear of its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The states of a transfer, as stored.
pub mod state {
    /// Waiting for a free slot.
    pub const QUEUED: &str = "queued";
    /// Looking at both engines and the node's disk.
    pub const CHECKING: &str = "checking";
    /// Bytes moving.
    pub const LOADING: &str = "loading";
    /// The node has the image.
    pub const DONE: &str = "done";
    /// It did not work; `error` says why.
    pub const FAILED: &str = "failed";
}

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The leader's own engine's socket.
    pub leader_docker: PathBuf,
    /// Most transfers moving at once.
    pub parallel: usize,
    /// Free disk a node keeps beyond an image, bytes.
    pub margin: u64,
    /// How long a plain Docker call may take.
    pub docker_timeout: Duration,
    /// The leader's own node (its agent reports the disk of the leader's engine), if it has one.
    pub local_node: Option<String>,
}

/// An image on a node's engine.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct NodeImage {
    /// Its id (`sha256:...`).
    pub id: String,
    /// Its tags (`repo:tag`); none for an untagged image.
    pub tags: Vec<String>,
    /// Its size, bytes.
    pub size_bytes: i64,
    /// When it was built.
    pub created: chrono::DateTime<chrono::Utc>,
    /// Containers (running or not) made from it.
    pub containers: i32,
    /// Containers running from it.
    pub running: i32,
    /// The app it was built for (an installed app), from its `io.trellis.app` label.
    pub app: Option<String>,
    /// The app's version, from its `io.trellis.app-version` label.
    pub app_version: Option<String>,
}

/// A transfer changed (queued, moved on, ended).
#[derive(Debug, Clone)]
pub struct TransferEvent {
    /// The transfer as it is now.
    pub transfer: transfer::Model,
}

/// How a transfer ended, for those waiting on it: `None` while it runs.
type Outcome = Option<Result<(), String>>;

/// A transfer under way: its id and how it ends.
type Running = (String, watch::Receiver<Outcome>);

/// The service; cheap to clone.
#[derive(Clone)]
pub struct Images {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    access: DockerAccess,
    clients: EngineClients,
    settings: Settings,
    permits: Semaphore,
    events: broadcast::Sender<TransferEvent>,
    /// Transfers under way by (node, image): their id and how they end.
    running: Mutex<HashMap<(String, String), Running>>,
    /// How an image is built on a node (set by the app service).
    node_build: std::sync::OnceLock<NodeBuild>,
}

/// Builds image `image` on node `node`'s engine and waits: `None` when no installed app's
/// version builds that image on its nodes.
pub type NodeBuild = Arc<
    dyn Fn(String, String) -> futures::future::BoxFuture<'static, Option<Result<(), String>>>
        + Send
        + Sync,
>;

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Checks an image reference as a user typed it: what Docker would take, in at most 255 bytes.
pub fn check_reference(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("image: must not be empty".into());
    }
    if image.len() > 255 {
        return Err("image: at most 255 characters".into());
    }
    if image
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c.is_uppercase())
    {
        return Err(format!(
            "image: {image:?} is not an image reference (no spaces, control characters or capitals)"
        ));
    }
    Ok(())
}

impl Images {
    /// The service (no task runs until a transfer is asked for).
    pub fn new(db: DatabaseConnection, access: DockerAccess, settings: Settings) -> Self {
        let (events, _) = broadcast::channel(EVENTS);
        Images {
            inner: Arc::new(Inner {
                db,
                access,
                clients: EngineClients::default(),
                permits: Semaphore::new(settings.parallel.max(1)),
                settings,
                events,
                running: Mutex::new(HashMap::new()),
                node_build: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets how images are built on nodes (once, by the app service).
    pub fn set_node_build(&self, build: NodeBuild) {
        let _ = self.inner.node_build.set(build);
    }

    /// Builds `image` on node `node_id` when an app's version builds it there (`build: node`), so
    /// a node that joins such an app's target later gets its own build; `None` when no app
    /// builds that image.
    pub async fn build_on_node(&self, node_id: &str, image: &str) -> Option<Result<(), String>> {
        let build = self.inner.node_build.get()?.clone();
        build(node_id.to_owned(), image.to_owned()).await
    }

    /// Transfer events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TransferEvent> {
        self.inner.events.subscribe()
    }

    /// The leader's own engine, the source of sideloads and the place of builds.
    pub fn leader_engine(&self) -> Result<Docker, EngineError> {
        let path = &self.inner.settings.leader_docker;
        if !path.exists() {
            return Err(EngineError::Unreachable(format!(
                "the leader's Docker engine is not at {} (see --leader-docker)",
                path.display()
            )));
        }
        Docker::connect_with_unix(
            &path.display().to_string(),
            self.inner.settings.docker_timeout.as_secs().max(1),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| {
            EngineError::Unreachable(format!(
                "cannot use the leader's Docker engine at {}: {e}",
                path.display()
            ))
        })
    }

    /// Loads a `docker save` archive (a tar, gzip'd or not), streamed as it arrives, into the
    /// leader's own engine, from where it can be sideloaded; at most `limit` bytes are taken.
    /// Returns the images the engine says it loaded. An archive cut short or not an image
    /// archive is refused, and the engine keeps nothing of it but whole layers.
    pub async fn load_upload<S, E>(&self, body: S, limit: u64) -> ApiResult<Vec<String>>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        use futures::StreamExt;
        let source = self.leader_engine().map_err(api_error)?;
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = taken.clone();
        let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let over_flag = over.clone();
        let body = body.map(move |chunk| {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
            let n = counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            if n + chunk.len() as u64 > limit {
                over_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(std::io::Error::other("over the upload limit"));
            }
            Ok::<_, std::io::Error>(chunk)
        });
        let source = source.with_timeout(sideload::REQUEST_LIMIT);
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::default()
            .quiet(true)
            .build();
        let mut load = Box::pin(source.import_image_stream(opts, body, None));
        let mut loaded = Vec::new();
        while let Some(item) = load.next().await {
            match item {
                Ok(info) => {
                    if let Some(line) = info.stream.as_deref().map(str::trim)
                        && let Some(name) = line
                            .strip_prefix("Loaded image: ")
                            .or_else(|| line.strip_prefix("Loaded image ID: "))
                    {
                        loaded.push(name.to_owned());
                    }
                }
                Err(e) => {
                    if over.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(ApiError::BadRequest(format!(
                            "the upload is over the limit of {}",
                            disk::human(limit)
                        )));
                    }
                    tracing::info!(error = %e, "an uploaded image archive was refused");
                    let text = format!("{e:?}");
                    return Err(match e {
                        _ if text.contains("length limit exceeded") => ApiError::BadRequest(
                            format!("the upload is over the limit of {}", disk::human(limit)),
                        ),
                        bollard::errors::Error::DockerStreamError { .. }
                        | bollard::errors::Error::DockerResponseServerError { .. } => {
                            ApiError::BadRequest(
                                "the leader's Docker engine refused the archive: not a `docker \
                                 save` archive, or cut short"
                                    .into(),
                            )
                        }
                        _ => ApiError::BadRequest(
                            "the upload broke off before the whole archive arrived".into(),
                        ),
                    });
                }
            }
        }
        if loaded.is_empty() {
            return Err(ApiError::BadRequest(
                "the archive held no image (make it with `docker save`)".into(),
            ));
        }
        Ok(loaded)
    }

    /// Marks failed the transfers a stopped leader left running: those begun before `before_ms`
    /// (this leader's start) and not ended. Called once at start.
    pub async fn recover(&self, before_ms: i64) -> ApiResult<u64> {
        let r = transfer::Entity::update_many()
            .col_expr(
                transfer::Column::State,
                sea_orm::sea_query::Expr::value(state::FAILED),
            )
            .col_expr(
                transfer::Column::Error,
                sea_orm::sea_query::Expr::value("interrupted by a leader restart"),
            )
            .col_expr(
                transfer::Column::FinishedMs,
                sea_orm::sea_query::Expr::value(now_ms()),
            )
            .filter(transfer::Column::StartedMs.lt(before_ms))
            .filter(transfer::Column::State.is_in([state::QUEUED, state::CHECKING, state::LOADING]))
            .exec(&self.inner.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// The newest transfers, of one node when given.
    pub async fn list(&self, node_id: Option<&str>, limit: u64) -> ApiResult<Vec<transfer::Model>> {
        let mut q = transfer::Entity::find()
            .order_by_desc(transfer::Column::StartedMs)
            .limit(limit.clamp(1, 500));
        if let Some(n) = node_id {
            q = q.filter(transfer::Column::NodeId.eq(n));
        }
        Ok(q.all(&self.inner.db).await?)
    }

    /// One transfer.
    pub async fn get(&self, id: &str) -> ApiResult<Option<transfer::Model>> {
        Ok(transfer::Entity::find_by_id(id).one(&self.inner.db).await?)
    }

    async fn node(&self, node_id: &str) -> ApiResult<node::Model> {
        node::Entity::find_by_id(node_id)
            .one(&self.inner.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no node {node_id:?}")))
    }

    /// Starts sending `image` from the leader's engine to node `node_id`'s, unless a transfer of
    /// it to that node is under way (then that one is returned). Returns at once; the transfer's
    /// row and events say how it goes.
    pub async fn sideload(
        &self,
        node_id: &str,
        image: &str,
        cause: &str,
        by: &str,
    ) -> ApiResult<transfer::Model> {
        check_reference(image).map_err(ApiError::BadRequest)?;
        let node = self.node(node_id).await?;
        if node.docker_endpoint.is_none() {
            return Err(ApiError::BadRequest(format!(
                "node {node_id:?} has no Docker engine Trellis can reach (its agent announced none)"
            )));
        }
        let (id, _) = self.start(node, image, cause, by).await?;
        self.get(&id)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("transfer {id} vanished")))
    }

    /// Makes sure node `node` has `image`, loading it from the leader's engine when it lacks it
    /// (by image id: a tag that moved on the leader is sent again), and waits until it does.
    /// For the reconciler.
    pub async fn ensure(
        &self,
        node: &node::Model,
        image: &str,
        cause: &str,
    ) -> Result<(), EngineError> {
        let (_, mut rx) = self
            .start(node.clone(), image, cause, "reconciler")
            .await
            .map_err(|e| EngineError::Failed(e.public_message()))?;
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome.map_err(EngineError::Failed);
            }
            if rx.changed().await.is_err() {
                return Err(EngineError::Failed(format!(
                    "the transfer of {image} to node {:?} ended without a word",
                    node.id
                )));
            }
        }
    }

    /// Sets the credentials nodes pull from `server` with.
    pub async fn set_registry_credential(
        &self,
        server: &str,
        username: &str,
        secret: &str,
        by: &str,
    ) -> ApiResult<entity::registry_credential::Model> {
        registry::set(&self.inner.db, server, username, secret, by).await
    }

    /// Removes `server`'s credentials; whether there were any.
    pub async fn remove_registry_credential(&self, server: &str) -> ApiResult<bool> {
        registry::remove(&self.inner.db, server).await
    }

    /// The registries with credentials (their secrets are never returned by the API).
    pub async fn registry_credentials(&self) -> ApiResult<Vec<entity::registry_credential::Model>> {
        registry::list(&self.inner.db).await
    }

    /// The credentials to pull `image` with, if its registry has some.
    pub async fn pull_credentials(&self, image: &str) -> Option<bollard::auth::DockerCredentials> {
        match registry::for_image(&self.inner.db, image).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    error = e.log_message(),
                    "cannot read the registry credentials"
                );
                None
            }
        }
    }

    /// The disk preflight of a pull of `image` onto node `node_id`: refused when the node's
    /// reported free disk cannot hold the image unpacked (its compressed layers, as its
    /// registry lists them, times [`disk::UNPACKED`]) plus the margin. When the registry cannot
    /// tell the leader the size, the margin alone is checked; a node that has not reported its
    /// disk is not checked.
    pub async fn check_pull(&self, node_id: &str, image: &str) -> Result<(), EngineError> {
        let Ok(node) = self.node(node_id).await else {
            return Ok(());
        };
        if node.disk_free_bytes.is_none() {
            return Ok(());
        }
        let credentials = self
            .pull_credentials(image)
            .await
            .and_then(|c| Some((c.username?, c.password?)));
        let arch = manifest_arch(&node.arch);
        let (what, size) =
            match manifest::compressed_size(image, arch.as_deref(), credentials).await {
                Ok(c) => (
                    format!("pulling image {image} ({} compressed)", disk::human(c)),
                    c.saturating_mul(disk::UNPACKED),
                ),
                Err(e) => {
                    tracing::debug!(image, error = e, "an image's size is unknown");
                    (
                        format!("pulling image {image} (its size unknown to the leader: {e})"),
                        0,
                    )
                }
            };
        disk::check(&node, &what, size, self.inner.settings.margin)
            .map(|_| ())
            .map_err(EngineError::Failed)
    }

    /// The disk preflight of a build with a context of `context` bytes on node `node_id`'s
    /// engine, or on the leader's (`None`: checked against the leader's own node, when it has
    /// one). Refused when the free disk cannot hold the context plus the margin.
    pub async fn check_build(
        &self,
        node_id: Option<&str>,
        what: &str,
        context: u64,
    ) -> Result<(), String> {
        let Some(id) = node_id.or(self.inner.settings.local_node.as_deref()) else {
            return Ok(());
        };
        let Ok(node) = self.node(id).await else {
            return Ok(());
        };
        disk::check_as(
            &node,
            what,
            "build context",
            context,
            self.inner.settings.margin,
        )
        .map(|_| ())
    }

    /// Node `node_id`'s engine (for builds there).
    pub async fn engine(&self, node_id: &str) -> Result<engine::Engine, EngineError> {
        let node = self
            .node(node_id)
            .await
            .map_err(|e| EngineError::Failed(e.public_message()))?;
        if node.docker_endpoint.is_none() {
            return Err(EngineError::Failed(format!(
                "node {node_id:?} has no Docker engine Trellis can reach (its agent announced none)"
            )));
        }
        self.inner
            .clients
            .get(
                &self.inner.access,
                &node,
                self.inner.settings.docker_timeout,
            )
            .await
    }

    /// Removes from node `node_id`'s engine the images labelled `label=value` that no container
    /// uses; returns how many are left (in use, or the engine not reached).
    pub async fn remove_labelled(&self, node_id: &str, label: &str, value: &str) -> usize {
        use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};
        let Ok(node) = self.node(node_id).await else {
            return 0;
        };
        let timeout = self.inner.settings.docker_timeout;
        let Ok(engine) = self
            .inner
            .clients
            .get(&self.inner.access, &node, timeout)
            .await
        else {
            return 1;
        };
        let filters = HashMap::from([("label", vec![format!("{label}={value}")])]);
        let list = engine.docker().list_images(Some(
            ListImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ));
        let Ok(Ok(images)) = tokio::time::timeout(timeout, list).await else {
            return 1;
        };
        let mut left = 0;
        for image in images {
            // Its tags one by one (an image with several needs force by id).
            let names: Vec<String> = if image.repo_tags.is_empty() {
                vec![image.id.clone()]
            } else {
                image.repo_tags.clone()
            };
            for name in names {
                let opts = RemoveImageOptionsBuilder::default().build();
                match engine.docker().remove_image(&name, Some(opts), None).await {
                    Ok(_) => {}
                    Err(e) => match engine::classify(node_id, "remove an image", &e) {
                        EngineError::NotFound => {}
                        _ => left += 1,
                    },
                }
            }
        }
        left
    }

    /// The images on node `node_id`'s engine, newest first.
    pub async fn on_node(&self, node_id: &str) -> ApiResult<Vec<NodeImage>> {
        use bollard::query_parameters::{ListContainersOptionsBuilder, ListImagesOptionsBuilder};
        let node = self.node(node_id).await?;
        if node.docker_endpoint.is_none() {
            return Err(ApiError::BadRequest(format!(
                "node {node_id:?} has no Docker engine Trellis can reach (its agent announced none)"
            )));
        }
        let timeout = self.inner.settings.docker_timeout;
        let engine = self
            .inner
            .clients
            .get(&self.inner.access, &node, timeout)
            .await
            .map_err(api_error)?;
        let docker = engine.docker();
        let listed = async {
            let images = docker
                .list_images(Some(ListImagesOptionsBuilder::default().build()))
                .await?;
            let containers = docker
                .list_containers(Some(
                    ListContainersOptionsBuilder::default().all(true).build(),
                ))
                .await?;
            Ok::<_, bollard::errors::Error>((images, containers))
        };
        let (images, containers) = match tokio::time::timeout(timeout, listed).await {
            Err(_) => {
                self.inner.clients.forget(node_id);
                return Err(ApiError::Unavailable(format!(
                    "node {node_id:?}'s Docker engine did not answer within {} s",
                    timeout.as_secs()
                )));
            }
            Ok(Err(e)) => {
                let e = engine::classify(node_id, "list images", &e);
                if matches!(e, EngineError::Unreachable(_)) {
                    self.inner.clients.forget(node_id);
                }
                return Err(api_error(e));
            }
            Ok(Ok(x)) => x,
        };
        let mut uses: HashMap<String, (i32, i32)> = HashMap::new();
        for c in containers {
            let running = c.state.as_ref().is_some_and(|s| s.as_ref() == "running");
            if let Some(id) = c.image_id {
                let u = uses.entry(id).or_default();
                u.0 += 1;
                u.1 += i32::from(running);
            }
        }
        let mut out: Vec<NodeImage> = images
            .into_iter()
            .map(|i| NodeImage {
                containers: uses.get(&i.id).map_or(0, |u| u.0),
                running: uses.get(&i.id).map_or(0, |u| u.1),
                app: i.labels.get(prune::APP_LABEL).cloned(),
                app_version: i.labels.get(build::APP_VERSION).cloned(),
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                size_bytes: i.size,
                created: chrono::DateTime::from_timestamp(i.created, 0).unwrap_or_default(),
                id: i.id,
            })
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Removes from node `node_id` the images of revisions no deployment needs any more (see
    /// [`prune`]); `named` and `keep` come from `Deployments::image_needs`.
    pub async fn prune(
        &self,
        node_id: &str,
        named: &std::collections::BTreeSet<String>,
        keep: &std::collections::BTreeSet<String>,
    ) -> ApiResult<prune::Report> {
        let node = self.node(node_id).await?;
        if node.docker_endpoint.is_none() {
            return Err(ApiError::BadRequest(format!(
                "node {node_id:?} has no Docker engine Trellis can reach (its agent announced none)"
            )));
        }
        let engine = self
            .inner
            .clients
            .get(
                &self.inner.access,
                &node,
                self.inner.settings.docker_timeout,
            )
            .await
            .map_err(api_error)?;
        let report = prune::prune(&engine, named, keep).await;
        if matches!(report, Err(EngineError::Unreachable(_))) {
            self.inner.clients.forget(node_id);
        }
        report.map_err(api_error)
    }

    /// Whether `node` has `image` as the leader's engine has it (same image id, with the tag):
    /// nothing to send. An image missing on the leader is a failure that names it.
    /// The leader's own trouble is a failure of this step (`Failed`), never the node's
    /// engine being unreachable.
    pub async fn has_same(&self, node: &node::Model, image: &str) -> Result<bool, EngineError> {
        let timeout = self.inner.settings.docker_timeout;
        let source = self
            .leader_engine()
            .map_err(|e| EngineError::Failed(e.public()))?;
        let id = match tokio::time::timeout(timeout, source.inspect_image(image)).await {
            Err(_) => {
                return Err(EngineError::Failed(
                    "the leader's Docker engine did not answer in time".into(),
                ));
            }
            Ok(Err(e)) => {
                let e = match engine::classify("leader", "inspect the image", &e) {
                    EngineError::NotFound => not_on_leader(image),
                    other => EngineError::Failed(format!(
                        "the leader's Docker engine: {}",
                        other.public()
                    )),
                };
                // The leader has it no more (pruned, removed by hand), but the node has the
                // tag: it runs what it has.
                let target = self
                    .inner
                    .clients
                    .get(&self.inner.access, node, timeout)
                    .await?;
                return match present_as(&target, image, timeout).await? {
                    Some(_) => Ok(true),
                    None => Err(e),
                };
            }
            Ok(Ok(i)) => i.id.unwrap_or_default(),
        };
        let target = self
            .inner
            .clients
            .get(&self.inner.access, node, timeout)
            .await?;
        Ok(present_as(&target, &id, timeout)
            .await?
            .is_some_and(|tags| {
                image == id
                    || tags
                        .iter()
                        .any(|t| t == image || t.strip_suffix(":latest") == Some(image))
            }))
    }

    /// The id and end of the transfer of `image` to `node`: one under way, or a new one.
    async fn start(
        &self,
        node: node::Model,
        image: &str,
        cause: &str,
        by: &str,
    ) -> ApiResult<(String, watch::Receiver<Outcome>)> {
        let key = (node.id.clone(), image.to_owned());
        if let Some((id, rx)) = self
            .inner
            .running
            .lock()
            .expect("transfers")
            .get(&key)
            .filter(|(_, rx)| rx.borrow().is_none() && rx.has_changed().is_ok())
            .cloned()
        {
            return Ok((id, rx));
        }
        let row = transfer::ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            node_id: Set(node.id.clone()),
            image: Set(image.to_owned()),
            image_id: Set(None),
            state: Set(state::QUEUED.into()),
            bytes: Set(0),
            total_bytes: Set(None),
            error: Set(None),
            cause: Set(cause.chars().take(200).collect()),
            created_by: Set(by.to_owned()),
            started_ms: Set(now_ms()),
            finished_ms: Set(None),
        }
        .insert(&self.inner.db)
        .await?;
        // The record is kept for 30 days.
        let month_ago = now_ms() - 30 * 24 * 3600 * 1000;
        if let Err(e) = transfer::Entity::delete_many()
            .filter(transfer::Column::FinishedMs.lt(month_ago))
            .exec(&self.inner.db)
            .await
        {
            tracing::warn!(error = %e, "cannot trim the transfer record");
        }
        let (tx, rx) = watch::channel(None);
        let raced = {
            let mut running = self.inner.running.lock().expect("transfers");
            let other = running
                .get(&key)
                .filter(|(_, rx)| rx.borrow().is_none() && rx.has_changed().is_ok())
                .cloned();
            if other.is_none() {
                running.insert(key.clone(), (row.id.clone(), rx.clone()));
            }
            other
        };
        // Another ask raced this one in: join it; this row goes as a duplicate.
        if let Some((id, other)) = raced {
            let _ = transfer::Entity::delete_by_id(row.id.clone())
                .exec(&self.inner.db)
                .await;
            return Ok((id, other));
        }
        self.emit(&row);
        let images = self.clone();
        let id = row.id.clone();
        let own = id.clone();
        tokio::spawn(async move {
            let outcome = images.run(row, &node).await;
            let _ = tx.send(Some(outcome));
            let mut running = images.inner.running.lock().expect("transfers");
            // Only its own entry: a later transfer of the same image may have taken the key.
            if running.get(&key).is_some_and(|(i, _)| *i == own) {
                running.remove(&key);
            }
        });
        Ok((id, rx))
    }

    fn emit(&self, row: &transfer::Model) {
        // No subscriber is not an error.
        let _ = self.inner.events.send(TransferEvent {
            transfer: row.clone(),
        });
    }

    async fn save(
        &self,
        row: transfer::Model,
        change: impl FnOnce(&mut transfer::ActiveModel),
    ) -> transfer::Model {
        let mut am = row.clone().into_active_model();
        change(&mut am);
        match am.update(&self.inner.db).await {
            Ok(saved) => {
                self.emit(&saved);
                saved
            }
            Err(e) => {
                tracing::warn!(error = %e, transfer = row.id, "cannot record a transfer's progress");
                row
            }
        }
    }

    /// Runs one transfer to its end and records how it ended.
    async fn run(&self, row: transfer::Model, node: &node::Model) -> Result<(), String> {
        let result = self.attempt(&row, node).await;
        let latest = self.get(&row.id).await.ok().flatten().unwrap_or(row);
        match &result {
            Ok(note) => {
                let bytes = latest.bytes;
                self.save(latest, |am| {
                    am.state = Set(state::DONE.into());
                    am.error = Set(note.clone());
                    am.bytes = Set(bytes);
                    am.finished_ms = Set(Some(now_ms()));
                })
                .await;
            }
            Err(e) => {
                tracing::info!(
                    node = node.id,
                    error = e.public(),
                    "an image transfer failed"
                );
                if matches!(e, EngineError::Unreachable(_)) {
                    self.inner.clients.forget(&node.id);
                }
                let msg = e.public();
                self.save(latest, |am| {
                    am.state = Set(state::FAILED.into());
                    am.error = Set(Some(msg));
                    am.finished_ms = Set(Some(now_ms()));
                })
                .await;
            }
        }
        result.map(|_| ()).map_err(|e| e.public())
    }

    /// The transfer's work; `Ok` carries a note for the row (the disk check skipped, the image
    /// already there).
    async fn attempt(
        &self,
        row: &transfer::Model,
        node: &node::Model,
    ) -> Result<Option<String>, EngineError> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| EngineError::Failed("the leader is shutting down".into()))?;
        let mut row = self
            .save(row.clone(), |am| am.state = Set(state::CHECKING.into()))
            .await;
        // The node as it is now: its free disk may have changed while this waited.
        let node = &self.node(&node.id).await.unwrap_or_else(|_| node.clone());
        let timeout = self.inner.settings.docker_timeout;
        let source = self.leader_engine()?;
        let image = row.image.clone();
        let inspected = match tokio::time::timeout(timeout, source.inspect_image(&image)).await {
            Err(_) => {
                return Err(EngineError::Unreachable(
                    "the leader's Docker engine did not answer in time".into(),
                ));
            }
            Ok(Err(e)) => match engine::classify("leader", "inspect the image", &e) {
                EngineError::NotFound => return Err(not_on_leader(&image)),
                other => return Err(other),
            },
            Ok(Ok(i)) => i,
        };
        // An image for another CPU would load, then fail at its first start.
        if let Some(arch) = inspected.architecture.as_deref()
            && let Some(node_arch) = docker_arch(&node.arch)
            && arch != node_arch
        {
            return Err(EngineError::Failed(format!(
                "image {image} is built for {arch}; node {:?} is {node_arch}",
                node.id
            )));
        }
        let image_id = inspected.id.clone().unwrap_or_default();
        let size = inspected
            .size
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0);
        row = self
            .save(row, |am| {
                am.image_id = Set(Some(image_id.clone()));
                am.total_bytes = Set(Some(i64::try_from(size).unwrap_or(i64::MAX)));
            })
            .await;
        let target = self
            .inner
            .clients
            .get(&self.inner.access, node, timeout)
            .await?;
        if let Some(present) = present_as(&target, &image_id, timeout).await? {
            // There by id. A tag the node lacks is added; nothing moves.
            if image != image_id && !present.contains(&image) {
                tag(&target, &image_id, &image, timeout).await?;
            }
            return Ok(Some("already on the node".into()));
        }
        let verdict = disk::check(
            node,
            &format!("image {image}"),
            size,
            self.inner.settings.margin,
        )
        .map_err(EngineError::Failed)?;
        row = self
            .save(row, |am| am.state = Set(state::LOADING.into()))
            .await;
        let progress = Arc::new(sideload::Progress::default());
        let stall = (timeout * 3).max(Duration::from_secs(30));
        let send = sideload::transfer(
            &source,
            target.docker(),
            &node.id,
            &image,
            progress.clone(),
            stall,
        );
        tokio::pin!(send);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut reported = 0u64;
        let result = loop {
            tokio::select! {
                r = &mut send => break r,
                _ = tick.tick() => {
                    let bytes = progress.bytes();
                    if bytes != reported {
                        reported = bytes;
                        let b = i64::try_from(bytes).unwrap_or(i64::MAX);
                        row = self.save(row, |am| am.bytes = Set(b)).await;
                    }
                }
            }
        };
        let bytes = i64::try_from(progress.bytes()).unwrap_or(i64::MAX);
        row = self.save(row, |am| am.bytes = Set(bytes)).await;
        if let Err(e) = result {
            let how_far = format!(
                " (after {} of {})",
                disk::human(progress.bytes()),
                disk::human(size)
            );
            return Err(match e {
                EngineError::Unreachable(r) => EngineError::Unreachable(r + &how_far),
                EngineError::Failed(r) => EngineError::Failed(r + &how_far),
                other => other,
            });
        }
        if present_as(&target, &image_id, timeout).await?.is_none() {
            return Err(EngineError::Failed(format!(
                "node {:?}'s Docker engine took the image but does not have {image_id}",
                row.node_id
            )));
        }
        Ok(match verdict {
            disk::Verdict::Fits => None,
            disk::Verdict::Unknown => {
                Some("loaded without a disk check: the node has not reported its free disk".into())
            }
        })
    }
}

/// Docker's name for the CPU a node's agent reports (`uname -m`'s), when Trellis knows it.
fn docker_arch(uname: &str) -> Option<&'static str> {
    match uname {
        "x86_64" | "amd64" => Some("amd64"),
        "aarch64" | "arm64" => Some("arm64"),
        "armv7l" | "armv6l" | "arm" => Some("arm"),
        "riscv64" => Some("riscv64"),
        _ => None,
    }
}

/// The platform a registry's manifest list names for a node's CPU (`uname -m`'s): Docker's
/// architecture, with the variant for 32-bit ARM.
fn manifest_arch(uname: &str) -> Option<String> {
    match uname {
        "armv7l" => Some("arm/v7".into()),
        "armv6l" => Some("arm/v6".into()),
        other => docker_arch(other).map(str::to_owned),
    }
}

fn not_on_leader(image: &str) -> EngineError {
    EngineError::Failed(format!(
        "image {image} is not on the leader's Docker engine: load or build it there first"
    ))
}

/// An engine's answer as the API gives it: unreachable is `UNAVAILABLE`, the rest a refusal.
pub fn api_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Unreachable(r) => ApiError::Unavailable(r),
        EngineError::NotFound => ApiError::NotFound("not found on the engine".into()),
        other => ApiError::Conflict(other.public()),
    }
}

/// The tags of image `id` on `engine`, when it has it.
async fn present_as(
    engine: &engine::Engine,
    id: &str,
    timeout: Duration,
) -> Result<Option<Vec<String>>, EngineError> {
    match tokio::time::timeout(timeout, engine.docker().inspect_image(id)).await {
        Err(_) => Err(EngineError::Unreachable(format!(
            "node {:?}'s Docker engine did not answer within {} s",
            engine.node_id,
            timeout.as_secs()
        ))),
        Ok(Ok(i)) => Ok(Some(i.repo_tags.unwrap_or_default())),
        Ok(Err(e)) => match engine::classify(&engine.node_id, "inspect an image", &e) {
            EngineError::NotFound => Ok(None),
            other => Err(other),
        },
    }
}

/// Tags image `id` as `reference` on `engine`.
async fn tag(
    engine: &engine::Engine,
    id: &str,
    reference: &str,
    timeout: Duration,
) -> Result<(), EngineError> {
    let (repo, tag) = engine::split_reference(reference);
    let opts = bollard::query_parameters::TagImageOptionsBuilder::default()
        .repo(repo)
        .tag(tag.unwrap_or("latest"))
        .build();
    match tokio::time::timeout(timeout, engine.docker().tag_image(id, Some(opts))).await {
        Err(_) => Err(EngineError::Unreachable(format!(
            "node {:?}'s Docker engine did not answer within {} s",
            engine.node_id,
            timeout.as_secs()
        ))),
        Ok(r) => r.map_err(|e| engine::classify(&engine.node_id, "tag the image", &e)),
    }
}
