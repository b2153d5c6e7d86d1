//! Apps: bundles uploaded as versions, built into images on the leader's engine, and run as
//! deployments (`app-<name>`, image `trellis-app/<name>:<version>` with `pull: SIDELOAD`), so
//! rollouts, rollback, logs and stats work for apps as for any deployment.
//!
//! The [`Apps`] service owns the app tables, the stored bundles under `<data-dir>/bundles`, and
//! the builds under way (one at a time: a build is CPU-heavy; a second ask for the same version
//! joins the first). A build's lines go out on a bounded broadcast as they come and its log is
//! kept with the version (the last 256 KiB). A leader that stops mid-build marks the build
//! failed at its next start; building again is one mutation.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use entity::{app, app_version as version};
use futures::StreamExt;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, Set, SqlErr, TransactionTrait,
    sea_query::{Expr, OnConflict},
};
use sha2::Digest;
use tokio::{
    io::AsyncWriteExt,
    sync::{Semaphore, broadcast, watch},
};

use super::{
    Images,
    build::{self, APP, APP_VERSION},
    bundles::{self, BundleKind, Param},
};
use crate::{
    deployments::{
        Deployments,
        spec::{ContainerSpec, DeploymentSpec, KeyValue, PullPolicy, Target},
    },
    error::{ApiError, ApiResult},
};

/// Build lines a slow subscriber may fall behind by.
pub const EVENTS: usize = 1024;
/// The most of a build's log kept (its end).
pub const MAX_LOG: usize = 256 * 1024;

/// Build states, as stored.
pub mod state {
    /// Uploaded, not built.
    pub const STORED: &str = "stored";
    /// Building.
    pub const BUILDING: &str = "building";
    /// Built: its image is on the leader's engine.
    pub const BUILT: &str = "built";
    /// The build failed; `build_error` says why.
    pub const FAILED: &str = "failed";
}

/// Settings of the app service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where bundles are kept (`<data-dir>`).
    pub data_dir: PathBuf,
    /// The largest bundle, bytes.
    pub bundle_max: u64,
    /// The base image of `py3` apps.
    pub py3_base: String,
    /// The base image of `nodered` apps.
    pub nodered_base: String,
}

/// Something happened to an app version's build.
#[derive(Debug, Clone)]
pub struct BuildEvent {
    /// The version's id.
    pub version_id: String,
    /// A line of the build's output, or `None` when its state changed.
    pub line: Option<String>,
    /// The line's number in the build's log (from 0).
    pub seq: usize,
    /// Its state now.
    pub state: String,
}

type Outcome = Option<Result<(), String>>;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct Apps {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    images: Images,
    deployments: Deployments,
    settings: Settings,
    events: broadcast::Sender<BuildEvent>,
    builds: Semaphore,
    building: Mutex<HashMap<String, watch::Receiver<Outcome>>>,
    /// The log so far of each build under way, by version id.
    live: Mutex<HashMap<String, Arc<Mutex<LiveLog>>>>,
    /// Builds a node asked for by itself that failed, by (version id, node): when, and why.
    node_failures: Mutex<HashMap<(String, String), (std::time::Instant, String)>>,
}

/// How long a node's failed build of a version is not tried again by itself (a deploy of the
/// app tries at once).
pub const NODE_BUILD_RETRY: std::time::Duration = std::time::Duration::from_secs(600);

/// A build's log as it grows: its last [`MAX_LOG`] bytes, numbered from the build's start.
#[derive(Debug, Default)]
pub struct LiveLog {
    /// The number of the first line kept.
    pub first: usize,
    /// The lines kept.
    pub lines: std::collections::VecDeque<String>,
    bytes: usize,
}

impl LiveLog {
    /// Adds a line; returns its number. The oldest lines go past [`MAX_LOG`] bytes.
    fn push(&mut self, line: &str) -> usize {
        // Terminal colours (pip's warnings) are dropped; one line is cut at 4 KiB, so a build
        // printing no newlines stays bounded too.
        let mut line = strip_ansi(line);
        if line.len() > 4096 {
            let mut cut = 4096;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > MAX_LOG {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= old.len() + 1;
            self.first += 1;
        }
        self.first + self.lines.len() - 1
    }

    /// The number the next line gets.
    pub fn next(&self) -> usize {
        self.first + self.lines.len()
    }

    fn text(&self) -> String {
        let body = self
            .lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        if self.first > 0 {
            format!("[... {} lines before are cut]\n{body}", self.first)
        } else {
            body
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A version built on its nodes' own engines (`build: node` in its `app.yaml`).
pub const BUILD_ON_NODE: &str = "node";
/// A version built on the leader's engine and sideloaded (the default).
pub const BUILD_ON_LEADER: &str = "leader";

/// The deployment an app runs as.
pub fn deployment_name(app: &str) -> String {
    format!("app-{app}")
}

/// A version's parameters.
pub fn params(v: &version::Model) -> Vec<Param> {
    serde_json::from_str(&v.params).unwrap_or_default()
}

impl Apps {
    /// The service.
    pub fn new(
        db: DatabaseConnection,
        images: Images,
        deployments: Deployments,
        settings: Settings,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENTS);
        Apps {
            inner: Arc::new(Inner {
                db,
                images,
                deployments,
                settings,
                events,
                builds: Semaphore::new(1),
                building: Mutex::new(HashMap::new()),
                live: Mutex::new(HashMap::new()),
                node_failures: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Build events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BuildEvent> {
        self.inner.events.subscribe()
    }

    /// Marks failed the builds a stopped leader left under way, and removes the uploads and
    /// build contexts it left half-written. Called once at start, before requests.
    pub async fn recover(&self) -> ApiResult<u64> {
        let incoming = self.bundles_dir().join(".incoming");
        if let Ok(mut dir) = tokio::fs::read_dir(&incoming).await {
            while let Ok(Some(e)) = dir.next_entry().await {
                let _ = tokio::fs::remove_file(e.path()).await;
            }
        }
        let r = version::Entity::update_many()
            .col_expr(
                version::Column::BuildState,
                sea_orm::sea_query::Expr::value(state::FAILED),
            )
            .col_expr(
                version::Column::BuildError,
                sea_orm::sea_query::Expr::value("interrupted by a leader restart: build it again"),
            )
            .filter(version::Column::BuildState.eq(state::BUILDING))
            .exec(&self.inner.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// Every app, by name.
    pub async fn list(&self) -> ApiResult<Vec<app::Model>> {
        Ok(app::Entity::find()
            .order_by_asc(app::Column::Name)
            .all(&self.inner.db)
            .await?)
    }

    /// One app.
    pub async fn get(&self, name: &str) -> ApiResult<app::Model> {
        app::Entity::find_by_id(name)
            .one(&self.inner.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no app {name:?}")))
    }

    /// An app's versions, newest first.
    pub async fn versions(&self, name: &str) -> ApiResult<Vec<version::Model>> {
        Ok(version::Entity::find()
            .filter(version::Column::App.eq(name))
            .order_by_desc(version::Column::CreatedMs)
            .all(&self.inner.db)
            .await?)
    }

    /// One version.
    pub async fn version(&self, name: &str, v: &str) -> ApiResult<version::Model> {
        version::Entity::find()
            .filter(version::Column::App.eq(name))
            .filter(version::Column::Version.eq(v))
            .one(&self.inner.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no version {v:?} of app {name:?}")))
    }

    /// One version by id.
    pub async fn version_by_id(&self, id: &str) -> ApiResult<Option<version::Model>> {
        Ok(version::Entity::find_by_id(id).one(&self.inner.db).await?)
    }

    fn bundles_dir(&self) -> PathBuf {
        self.inner.settings.data_dir.join("bundles")
    }

    /// Takes an uploaded bundle (streamed, at most the bundle limit), checks it whole, and
    /// stores it as a version of its app. `name` and `version` override `app.yaml`'s. Nothing
    /// is kept of a bundle that is refused.
    pub async fn upload<S, E>(
        &self,
        body: S,
        name: Option<String>,
        version_name: Option<String>,
        by: &str,
    ) -> ApiResult<version::Model>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let incoming = self.bundles_dir().join(".incoming");
        tokio::fs::create_dir_all(&incoming)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot make {}: {e}", incoming.display())))?;
        let tmp = incoming.join(uuid::Uuid::new_v4().to_string());
        let result = self.receive(body, &tmp, name, version_name, by).await;
        // Whatever happened, the incoming file is gone: moved into place or removed.
        let _ = tokio::fs::remove_file(&tmp).await;
        result
    }

    async fn receive<S, E>(
        &self,
        mut body: S,
        tmp: &Path,
        name: Option<String>,
        version_name: Option<String>,
        by: &str,
    ) -> ApiResult<version::Model>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let limit = self.inner.settings.bundle_max;
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot store an upload: {e}")))?;
        let mut hash = sha2::Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                let e = e.to_string();
                ApiError::BadRequest(if e.contains("length limit exceeded") {
                    format!(
                        "the bundle is over the limit of {}",
                        super::disk::human(limit)
                    )
                } else {
                    format!("the upload broke off after {size} bytes")
                })
            })?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ApiError::BadRequest(format!(
                    "the bundle is over the limit of {}",
                    super::disk::human(limit)
                )));
            }
            hash.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::Internal(format!("cannot store an upload: {e}")))?;
        }
        file.flush()
            .await
            .map_err(|e| ApiError::Internal(format!("cannot store an upload: {e}")))?;
        drop(file);
        let path = tmp.to_path_buf();
        let checked = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            let read = bundles::open(f).map_err(|e| format!("not a tar archive: {e}"))?;
            // Unpacked, a bundle may be four times its size (source compresses well), no more.
            bundles::check(read, limit.saturating_mul(4))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("the bundle check stopped: {e}")))?
        .map_err(|e| ApiError::BadRequest(format!("bad bundle: {e}")))?;
        let name = name
            .or_else(|| checked.manifest.name.clone())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "name the app: ?name= on the upload, or name: in app.yaml".into(),
                )
            })?;
        let v = version_name
            .or_else(|| checked.manifest.version.clone())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "name the version: ?version= on the upload, or version: in app.yaml".into(),
                )
            })?;
        bundles::check_name(&name).map_err(ApiError::BadRequest)?;
        bundles::check_version(&v).map_err(ApiError::BadRequest)?;
        if self.version(&name, &v).await.is_ok() {
            return Err(ApiError::Conflict(format!(
                "app {name} already has a version {v}: upload this one as another version"
            )));
        }
        let dir = self.bundles_dir().join(&name);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot make {}: {e}", dir.display())))?;
        // A name of its own: two uploads of one version at once never share a file; the one
        // that loses the database's unique index removes only its own.
        let relative = format!(
            "bundles/{name}/{v}-{}.bundle",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let stored = self.inner.settings.data_dir.join(&relative);
        tokio::fs::rename(tmp, &stored)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot store the bundle: {e}")))?;
        let m = &checked.manifest;
        let tags = serde_json::to_string(&m.tags).unwrap_or_else(|_| "[]".into());
        let row = version::ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            app: Set(name.clone()),
            version: Set(v.clone()),
            kind: Set(checked.kind.as_str().to_owned()),
            description: Set(m.description.clone()),
            params: Set(serde_json::to_string(&m.parameters).unwrap_or_else(|_| "[]".into())),
            bundle_path: Set(Some(relative.clone())),
            bundle_sha256: Set(trellis_proto::hex(&hash.finalize())),
            bundle_bytes: Set(i64::try_from(size).unwrap_or(i64::MAX)),
            strip_dir: Set(checked.strip.clone()),
            build_on: Set(match m.build {
                Some(bundles::BuildOn::Node) => BUILD_ON_NODE,
                _ => BUILD_ON_LEADER,
            }
            .to_owned()),
            build_state: Set(state::STORED.into()),
            build_log: Set(String::new()),
            build_error: Set(None),
            deploy_error: Set(None),
            image: Set(build::image_name(&name, &v)),
            image_id: Set(None),
            created_by: Set(by.to_owned()),
            created_ms: Set(now_ms()),
            built_ms: Set(None),
        };
        let saved = self
            .inner
            .db
            .transaction::<_, version::Model, DbErr>(|txn| {
                let (name, description, tags, by) = (
                    name.clone(),
                    m.description.clone(),
                    tags.clone(),
                    by.to_owned(),
                );
                Box::pin(async move {
                    // A write first (SQLite: a transaction that reads first cannot write later
                    // once another wrote); a second upload of a new app finds the row there.
                    app::Entity::insert(app::ActiveModel {
                        name: Set(name.clone()),
                        description: Set(description.clone()),
                        tags: Set(tags.clone()),
                        created_by: Set(by),
                        created_ms: Set(now_ms()),
                    })
                    .on_conflict(
                        OnConflict::column(app::Column::Name)
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec_without_returning(txn)
                    .await?;
                    if description.is_some() || tags != "[]" {
                        let mut update =
                            app::Entity::update_many().filter(app::Column::Name.eq(&name));
                        if let Some(d) = description {
                            update = update.col_expr(app::Column::Description, Expr::value(d));
                        }
                        if tags != "[]" {
                            update = update.col_expr(app::Column::Tags, Expr::value(tags));
                        }
                        update.exec(txn).await?;
                    }
                    row.insert(txn).await
                })
            })
            .await;
        match saved {
            Ok(row) => Ok(row),
            Err(e) => {
                let _ = tokio::fs::remove_file(&stored).await;
                let e = match e {
                    sea_orm::TransactionError::Connection(e)
                    | sea_orm::TransactionError::Transaction(e) => e,
                };
                Err(match e.sql_err() {
                    Some(SqlErr::UniqueConstraintViolation(_)) => ApiError::Conflict(format!(
                        "app {name} already has a version {v}: upload this one as another version"
                    )),
                    _ => e.into(),
                })
            }
        }
    }

    fn emit(&self, version_id: &str, line: Option<String>, seq: usize, state: &str) {
        // No subscriber is not an error.
        let _ = self.inner.events.send(BuildEvent {
            version_id: version_id.to_owned(),
            line,
            seq,
            state: state.to_owned(),
        });
    }

    /// The log of a version's build so far: the lines of one under way (from memory), else the
    /// stored log of the last one.
    /// Returns the number of its first line and the lines.
    pub async fn log_so_far(&self, version_id: &str) -> ApiResult<(usize, Vec<String>)> {
        let live = self
            .inner
            .live
            .lock()
            .expect("build logs")
            .get(version_id)
            .cloned();
        if let Some(log) = live {
            let log = log.lock().expect("build log");
            return Ok((log.first, log.lines.iter().cloned().collect()));
        }
        Ok((
            0,
            self.version_by_id(version_id)
                .await?
                .map(|v| v.build_log.lines().map(str::to_owned).collect())
                .unwrap_or_default(),
        ))
    }

    /// Starts building a version on the leader's engine (a build of it under way is joined).
    /// Returns the version as it is then.
    pub async fn build(&self, name: &str, v: &str) -> ApiResult<version::Model> {
        let row = self.version(name, v).await?;
        if row.build_on == BUILD_ON_NODE {
            return Err(ApiError::BadRequest(format!(
                "{name} {v} builds on its nodes (app.yaml's build: node): deployApp builds it there"
            )));
        }
        self.start_build(row.clone(), Vec::new()).await?;
        Ok(self.version_by_id(&row.id).await?.unwrap_or(row))
    }

    /// The end of the build of `row`: one under way, or a new one.
    /// `on`: the nodes whose engines build it (a `build: node` version), none for the leader's.
    async fn start_build(
        &self,
        row: version::Model,
        on: Vec<String>,
    ) -> ApiResult<watch::Receiver<Outcome>> {
        if row.bundle_path.is_none() {
            return Err(ApiError::BadRequest(format!(
                "{} {} has no stored bundle to build",
                row.app, row.version
            )));
        }
        let (tx, rx) = watch::channel(None);
        {
            let mut building = self.inner.building.lock().expect("builds");
            if let Some(other) = building
                .get(&row.id)
                .filter(|r| r.borrow().is_none() && r.has_changed().is_ok())
            {
                return Ok(other.clone());
            }
            building.insert(row.id.clone(), rx.clone());
        }
        let mut am = row.clone().into_active_model();
        am.build_state = Set(state::BUILDING.into());
        am.build_log = Set(String::new());
        am.build_error = Set(None);
        if let Err(e) = am.update(&self.inner.db).await {
            self.inner.building.lock().expect("builds").remove(&row.id);
            return Err(e.into());
        }
        self.emit(&row.id, None, 0, state::BUILDING);
        let apps = self.clone();
        let own = rx.clone();
        tokio::spawn(async move {
            let id = row.id.clone();
            let outcome = apps.run_build(row, on).await;
            let _ = tx.send(Some(outcome));
            let mut building = apps.inner.building.lock().expect("builds");
            // Only its own entry: a later build of the version may have taken the key.
            if building.get(&id).is_some_and(|r| r.same_channel(&own)) {
                building.remove(&id);
            }
        });
        Ok(rx)
    }

    async fn run_build(&self, row: version::Model, on: Vec<String>) -> Result<(), String> {
        let log = Arc::new(Mutex::new(LiveLog::default()));
        self.inner
            .live
            .lock()
            .expect("build logs")
            .insert(row.id.clone(), log.clone());
        let result = self.build_work(&row, &on, log.clone()).await;
        let (text, next) = {
            let log = log.lock().expect("build log");
            (log.text(), log.next())
        };
        let latest = self
            .version_by_id(&row.id)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| row.clone());
        let mut am = latest.into_active_model();
        am.build_log = Set(text);
        am.built_ms = Set(Some(now_ms()));
        let end = match &result {
            Ok(image_id) => {
                am.build_state = Set(state::BUILT.into());
                am.image_id = Set(Some(image_id.clone()));
                am.build_error = Set(None);
                state::BUILT
            }
            Err(e) => {
                am.build_state = Set(state::FAILED.into());
                am.build_error = Set(Some(e.clone()));
                state::FAILED
            }
        };
        if let Err(e) = am.update(&self.inner.db).await {
            tracing::warn!(error = %e, app = row.app, version = row.version, "cannot record a build's end");
        }
        self.inner.live.lock().expect("build logs").remove(&row.id);
        self.emit(&row.id, None, next, end);
        result.map(|_| ())
    }

    async fn build_work(
        &self,
        row: &version::Model,
        on: &[String],
        log: Arc<Mutex<LiveLog>>,
    ) -> Result<String, String> {
        let _permit = self
            .inner
            .builds
            .acquire()
            .await
            .map_err(|_| "the leader is shutting down".to_owned())?;
        let kind = BundleKind::parse(&row.kind).ok_or("an unknown bundle type")?;
        let bundle = self
            .inner
            .settings
            .data_dir
            .join(row.bundle_path.as_deref().ok_or("no stored bundle")?);
        let params = params(row);
        let base = match kind {
            BundleKind::Py3 => self.inner.settings.py3_base.clone(),
            BundleKind::Nodered => self.inner.settings.nodered_base.clone(),
            BundleKind::Dockerfile => String::new(),
        };
        let strip = row.strip_dir.clone();
        let dir = self.bundles_dir().join(".incoming");
        let context = dir.join(format!("context-{}.tar", uuid::Uuid::new_v4()));
        let ctx = context.clone();
        // Gone however the build ends.
        struct Remove(PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let _context_file = Remove(context.clone());
        let say = |line: &str| {
            let mut log = log.lock().expect("build log");
            let seq = log.push(line);
            let kept = log.lines.back().cloned().unwrap_or_default();
            drop(log);
            self.emit(&row.id, Some(kept), seq, state::BUILDING);
        };
        say(&format!(
            "Trellis: building {} {} ({}) on {}",
            row.app,
            row.version,
            row.kind,
            if on.is_empty() {
                "the leader's Docker engine".to_owned()
            } else {
                format!("the engines of nodes {}", on.join(", "))
            }
        ));
        let dockerfile = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let top = top_names(&bundle, strip.as_deref())?;
            let generated = build::dockerfile(kind, &base, &top, &params);
            build::write_context(&bundle, strip.as_deref(), generated.as_deref(), &ctx)?;
            Ok::<_, String>(generated)
        })
        .await
        .map_err(|e| format!("the build context: {e}"))??;
        let dockerfile_name = if dockerfile.is_some() {
            build::GENERATED
        } else {
            "Dockerfile"
        };
        if let Some(text) = &dockerfile {
            say(&format!("Trellis: the generated {dockerfile_name}:"));
            for line in text.lines() {
                say(&format!("  {line}"));
            }
        }
        let labels = HashMap::from([
            (APP.to_owned(), row.app.clone()),
            (APP_VERSION.to_owned(), row.version.clone()),
        ]);
        let context_bytes = tokio::fs::metadata(&context)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let what = format!("building {} {}", row.app, row.version);
        if on.is_empty() {
            self.inner
                .images
                .check_build(None, &what, context_bytes)
                .await?;
            let docker = self
                .inner
                .images
                .leader_engine()
                .map_err(|e| e.public())?
                .with_timeout(super::sideload::REQUEST_LIMIT);
            return build::run(&docker, &context, dockerfile_name, &row.image, &labels, say).await;
        }
        // On each node's own engine, one after the other (a Pi's build takes its CPU).
        let mut id = String::new();
        for node in on {
            say(&format!("Trellis: on node {node}"));
            self.inner
                .images
                .check_build(Some(node), &what, context_bytes)
                .await?;
            let engine = self
                .inner
                .images
                .engine(node)
                .await
                .map_err(|e| e.public())?;
            let docker = engine
                .docker()
                .clone()
                .with_timeout(super::sideload::REQUEST_LIMIT);
            id = build::run(
                &docker,
                &context,
                dockerfile_name,
                &row.image,
                &labels,
                &say,
            )
            .await
            .map_err(|e| format!("on node {node}: {e}"))?;
        }
        Ok(id)
    }

    /// Waits for the build of `row` (starting one when it is not built); the built version.
    pub async fn built(&self, row: version::Model) -> ApiResult<version::Model> {
        // Built, and still there (a prune or a hand may have removed it since).
        if row.build_state == state::BUILT && self.image_there(&row).await {
            return Ok(row);
        }
        let rx = self.start_build(row.clone(), Vec::new()).await?;
        self.wait_build(&row, rx).await
    }

    /// Builds the `build: node` version whose image is `image` on node `node_id` and waits:
    /// what the reconciler asks for a node that joined the app's target after its build.
    /// `None` when no stored version builds that image on its nodes (a fast deploy keeps no
    /// bundle to build from).
    pub async fn build_for_node(&self, node_id: &str, image: &str) -> Option<Result<(), String>> {
        let row = version::Entity::find()
            .filter(version::Column::Image.eq(image))
            .filter(version::Column::BuildOn.eq(BUILD_ON_NODE))
            .one(&self.inner.db)
            .await
            .ok()??;
        row.bundle_path.as_ref()?;
        let key = (row.id.clone(), node_id.to_owned());
        // A build that failed here lately is not tried again at every retry of the reconciler
        // (each would take the one build slot and send the context again).
        let failed = self
            .inner
            .node_failures
            .lock()
            .expect("node builds")
            .get(&key)
            .filter(|(at, _)| at.elapsed() < NODE_BUILD_RETRY)
            .map(|(_, why)| why.clone());
        if let Some(why) = failed {
            return Some(Err(format!(
                "{why} (tried again within {} minutes, or at once when the app is deployed again)",
                NODE_BUILD_RETRY.as_secs() / 60
            )));
        }
        let result = match self
            .start_build(row.clone(), vec![node_id.to_owned()])
            .await
        {
            Ok(rx) => self.wait_build(&row, rx).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let result = result.map_err(|e| e.public_message());
        let mut failures = self.inner.node_failures.lock().expect("node builds");
        match &result {
            Ok(()) => {
                failures.remove(&key);
            }
            Err(why) => {
                failures.insert(key, (std::time::Instant::now(), why.clone()));
            }
        }
        Some(result)
    }

    /// Builds `row` on the engines of `nodes` (a `build: node` version) and waits.
    pub async fn built_on(
        &self,
        row: version::Model,
        nodes: Vec<String>,
    ) -> ApiResult<version::Model> {
        let rx = self.start_build(row.clone(), nodes).await?;
        self.wait_build(&row, rx).await
    }

    async fn wait_build(
        &self,
        row: &version::Model,
        mut rx: watch::Receiver<Outcome>,
    ) -> ApiResult<version::Model> {
        loop {
            let outcome = rx.borrow_and_update().clone();
            if let Some(outcome) = outcome {
                return match outcome {
                    Ok(()) => Ok(self.version(&row.app, &row.version).await?),
                    Err(e) => Err(ApiError::Conflict(format!(
                        "{} {} did not build: {e}",
                        row.app, row.version
                    ))),
                };
            }
            if rx.changed().await.is_err() {
                return Err(ApiError::Internal("a build ended without a word".into()));
            }
        }
    }

    /// Fast deploy: builds an uploaded version, drops its bundle (nothing kept but the image),
    /// and runs it on `target` as the app's deployment. On a failed build the bundle goes too.
    pub async fn fast_deploy(
        &self,
        row: version::Model,
        target: Target,
        by: &str,
    ) -> ApiResult<entity::deployment::Model> {
        let built = if row.build_on == BUILD_ON_NODE {
            let nodes = self.nodes_of(&row.app, Some(&target)).await?;
            self.built_on(row.clone(), nodes).await
        } else {
            self.built(row.clone()).await
        };
        if let Some(p) = &row.bundle_path {
            let _ = tokio::fs::remove_file(self.inner.settings.data_dir.join(p)).await;
        }
        if built.is_err() {
            // Nothing is kept of a fast deploy that did not build: the same version may come
            // again.
            version::Entity::delete_by_id(&row.id)
                .exec(&self.inner.db)
                .await?;
            if self.versions(&row.app).await?.is_empty() {
                app::Entity::delete_by_id(&row.app)
                    .exec(&self.inner.db)
                    .await?;
            }
        } else {
            version::Entity::update_many()
                .col_expr(version::Column::BundlePath, Expr::value(None::<String>))
                .filter(version::Column::Id.eq(&row.id))
                .exec(&self.inner.db)
                .await?;
        }
        let row = built?;
        self.apply(&row, Some(target), Vec::new(), by).await
    }

    /// Runs version `v` of app `name` on `target` as the deployment `app-<name>`: made when
    /// there is none, else given the new version's image as a new revision, which rolls out as
    /// the deployment's update settings say. `env` sets the app's parameters (checked against
    /// their types); the others take their defaults. What can be checked is checked at once
    /// (the version, the parameters, a target for a first deploy, a hand-made `app-<name>`);
    /// a built version is deployed at once, one not built is built first and deployed when its
    /// build ends, after this returns (a build can take minutes): `deployError` on the version
    /// says if that failed. Returns the version.
    pub async fn deploy(
        &self,
        name: &str,
        v: &str,
        target: Option<Target>,
        env: Vec<KeyValue>,
        by: &str,
    ) -> ApiResult<version::Model> {
        let row = self.version(name, v).await?;
        let declared = params(&row);
        for kv in &env {
            let Some(p) = declared.iter().find(|p| p.name == kv.name) else {
                return Err(ApiError::BadRequest(format!(
                    "{name} {v} has no parameter {:?} (it has: {})",
                    kv.name,
                    declared
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            bundles::check_value(p, &kv.value).map_err(ApiError::BadRequest)?;
        }
        match self.existing(name).await? {
            Some((_, spec)) => self.check_ours(name, &spec)?,
            None if target.is_none() => {
                return Err(ApiError::BadRequest(format!(
                    "{name} runs nowhere yet: give a target (nodeIds, labels or all)"
                )));
            }
            None => {}
        }
        self.set_deploy_error(&row.id, None).await?;
        // A user asks: the nodes whose build of it failed try again.
        self.inner
            .node_failures
            .lock()
            .expect("node builds")
            .retain(|(version, _), _| version != &row.id);
        if row.build_on == BUILD_ON_NODE {
            // Built on each of its nodes' engines, then run from what each has.
            let nodes = self.nodes_of(name, target.as_ref()).await?;
            if nodes.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "{name} {v} builds on its nodes, and the target chooses none"
                )));
            }
            let apps = self.clone();
            let by = by.to_owned();
            let id = row.id.clone();
            let rx = self.start_build(row.clone(), nodes).await?;
            let task_id = id.clone();
            tokio::spawn(async move {
                let id = task_id;
                let result = match apps.wait_build(&row, rx).await {
                    Ok(row) => apps.apply(&row, target, env, &by).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    let _ = apps.set_deploy_error(&id, Some(e.public_message())).await;
                }
            });
            return self
                .version_by_id(&id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no version {v:?} of app {name:?}")));
        }
        let there = row.build_state == state::BUILT && self.image_there(&row).await;
        if there {
            self.apply(&row, target, env, by).await?;
            return Ok(self.version_by_id(&row.id).await?.unwrap_or(row));
        }
        // Built first; deployed when the build ends.
        self.start_build(row.clone(), Vec::new()).await?;
        let apps = self.clone();
        let by = by.to_owned();
        let id = row.id.clone();
        let task_id = id.clone();
        tokio::spawn(async move {
            let id = task_id;
            let result = match apps.built(row).await {
                Ok(row) => apps.apply(&row, target, env, &by).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                let _ = apps.set_deploy_error(&id, Some(e.public_message())).await;
            }
        });
        self.version_by_id(&id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no version {v:?} of app {name:?}")))
    }

    /// The nodes `target` chooses, or the app's deployment's target when none is given.
    async fn nodes_of(&self, name: &str, target: Option<&Target>) -> ApiResult<Vec<String>> {
        let target = match target {
            Some(t) => t.clone(),
            None => match self.existing(name).await? {
                Some((_, spec)) => spec.target,
                None => return Ok(Vec::new()),
            },
        };
        Ok(self
            .inner
            .deployments
            .preview(&target)
            .await?
            .into_iter()
            .filter(|n| n.docker_endpoint.is_some())
            .map(|n| n.id)
            .collect())
    }

    async fn set_deploy_error(&self, id: &str, error: Option<String>) -> ApiResult<()> {
        version::Entity::update_many()
            .col_expr(version::Column::DeployError, Expr::value(error))
            .filter(version::Column::Id.eq(id))
            .exec(&self.inner.db)
            .await?;
        Ok(())
    }

    /// Whether a built version's image is still on the leader's engine.
    async fn image_there(&self, row: &version::Model) -> bool {
        match self.inner.images.leader_engine() {
            Ok(docker) => docker.inspect_image(&row.image).await.is_ok(),
            Err(_) => true,
        }
    }

    /// The app's deployment with its latest spec, if it has one.
    async fn existing(
        &self,
        name: &str,
    ) -> ApiResult<Option<(entity::deployment::Model, DeploymentSpec)>> {
        match self.inner.deployments.find(&deployment_name(name)).await {
            Ok(d) => {
                let spec = self
                    .inner
                    .deployments
                    .spec(&d.id, d.latest_revision)
                    .await?;
                Ok(Some((d, spec)))
            }
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes or changes the app's deployment to run the built version `row`.
    async fn apply(
        &self,
        row: &version::Model,
        target: Option<Target>,
        env: Vec<KeyValue>,
        by: &str,
    ) -> ApiResult<entity::deployment::Model> {
        let name = row.app.as_str();
        // Built on the nodes: each runs what it built; else the leader sends it.
        let pull = if row.build_on == BUILD_ON_NODE {
            PullPolicy::Never
        } else {
            PullPolicy::Sideload
        };
        // Every parameter is set on the container: given, else as before, else its default (a
        // dockerfile bundle's image has no ENV of them).
        let defaults: Vec<KeyValue> = params(row)
            .into_iter()
            .filter(|p| !env.iter().any(|kv| kv.name == p.name))
            .filter_map(|p| {
                Some(KeyValue {
                    value: p.default?,
                    name: p.name,
                })
            })
            .collect();
        match self.existing(name).await? {
            None => {
                let target = target.ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "{name} runs nowhere yet: give a target (nodeIds, labels or all)"
                    ))
                })?;
                let spec = DeploymentSpec {
                    container: ContainerSpec {
                        image: row.image.clone(),
                        pull,
                        env: env.into_iter().chain(defaults).collect(),
                        // The image's io.trellis.app labels pass to its containers.
                        ..ContainerSpec::default()
                    },
                    target,
                    ..DeploymentSpec::default()
                };
                self.inner
                    .deployments
                    .create(&deployment_name(name), spec, by)
                    .await
            }
            Some((d, latest)) => {
                self.check_ours(name, &latest)?;
                let mut spec = latest.clone();
                spec.container.image = row.image.clone();
                spec.container.pull = pull;
                for kv in env {
                    match spec.container.env.iter_mut().find(|e| e.name == kv.name) {
                        Some(e) => e.value = kv.value,
                        None => spec.container.env.push(kv),
                    }
                }
                // Values set before stay; a new version's new parameters take their defaults.
                for kv in defaults {
                    if !spec.container.env.iter().any(|e| e.name == kv.name) {
                        spec.container.env.push(kv);
                    }
                }
                if let Some(t) = target {
                    spec.target = t;
                }
                if latest == spec {
                    return Ok(d);
                }
                self.inner.deployments.update(&d.id, spec, None, by).await
            }
        }
    }

    /// Refuses a deployment named `app-<name>` that does not run this app's images (someone
    /// made one by hand): it is not the app's to change or remove.
    fn check_ours(&self, name: &str, spec: &DeploymentSpec) -> ApiResult<()> {
        if spec
            .container
            .image
            .starts_with(&format!("trellis-app/{name}:"))
        {
            Ok(())
        } else {
            Err(ApiError::Conflict(format!(
                "the deployment {} runs {}, not app {name}: rename or remove it first",
                deployment_name(name),
                spec.container.image
            )))
        }
    }

    /// Removes an app: its deployment (its containers go from every node), its versions, their
    /// bundles and its images on the leader's engine.
    pub async fn remove(&self, name: &str) -> ApiResult<()> {
        self.get(name).await?;
        let mut nodes = Vec::new();
        if let Some((d, spec)) = self.existing(name).await? {
            self.check_ours(name, &spec)?;
            nodes = self
                .inner
                .deployments
                .instances(&d.id)
                .await?
                .into_iter()
                .map(|i| i.node_id)
                .collect();
            self.inner.deployments.remove(&d.id).await?;
        }
        // Its images leave the nodes once their containers have (the reconciler removes those
        // shortly): tried every 5 s for up to 2 minutes. No revision names them any more, so
        // no prune would.
        if !nodes.is_empty() {
            let images = self.inner.images.clone();
            let app = name.to_owned();
            tokio::spawn(async move {
                for _ in 0..24 {
                    let mut left = 0;
                    for n in &nodes {
                        left += images.remove_labelled(n, APP, &app).await;
                    }
                    if left == 0 {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
                tracing::info!(
                    app,
                    "some of a removed app's images stay on its nodes (in use)"
                );
            });
        }
        let versions = self.versions(name).await?;
        app::Entity::delete_by_id(name).exec(&self.inner.db).await?;
        for v in versions {
            if let Some(p) = &v.bundle_path {
                let _ = tokio::fs::remove_file(self.inner.settings.data_dir.join(p)).await;
            }
        }
        let _ = tokio::fs::remove_dir(self.bundles_dir().join(name)).await;
        if let Ok(docker) = self.inner.images.leader_engine() {
            let filters = HashMap::from([("label", vec![format!("{APP}={name}")])]);
            if let Ok(list) = docker
                .list_images(Some(
                    bollard::query_parameters::ListImagesOptionsBuilder::default()
                        .filters(&filters)
                        .build(),
                ))
                .await
            {
                for image in list {
                    // An image a container still uses stays; the removed deployment's containers
                    // go shortly and a prune takes it then.
                    let _ = docker
                        .remove_image(
                            &image.id,
                            Some(
                                bollard::query_parameters::RemoveImageOptionsBuilder::default()
                                    .force(true)
                                    .build(),
                            ),
                            None,
                        )
                        .await;
                }
            }
        }
        Ok(())
    }
}

/// `text` without terminal escape sequences (`ESC [ ... letter`) and other control characters
/// but tabs.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// The names at the top of the bundle at `path` (through `strip`).
fn top_names(path: &Path, strip: Option<&str>) -> Result<Vec<String>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("the stored bundle: {e}"))?;
    let read = bundles::open(f).map_err(|e| format!("the stored bundle: {e}"))?;
    let mut archive = tar::Archive::new(read);
    let mut top = Vec::new();
    for entry in archive
        .entries()
        .map_err(|e| format!("the stored bundle: {e}"))?
    {
        let entry = entry.map_err(|e| format!("the stored bundle: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("the stored bundle: {e}"))?;
        let mut parts = path
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .skip(usize::from(strip.is_some()));
        if let Some(first) = parts.next() {
            top.push(first);
        }
    }
    top.sort();
    top.dedup();
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_log_keeps_its_end_plain_and_bounded() {
        assert_eq!(
            strip_ansi("\u{1b}[91mWARNING: as root\u{1b}[0m\tok\r"),
            "WARNING: as root\tok"
        );
        let mut log = LiveLog::default();
        let line = "x".repeat(1000);
        for i in 0..1000 {
            assert_eq!(log.push(&line), i);
        }
        assert!(log.lines.len() * 1001 <= MAX_LOG, "bounded by bytes");
        assert_eq!(log.next(), 1000, "numbers go on from the build's start");
        assert_eq!(log.first + log.lines.len(), 1000);
        assert!(
            log.text()
                .starts_with(&format!("[... {} lines before are cut]", log.first))
        );
        let mut long = LiveLog::default();
        long.push(&"y".repeat(10_000));
        assert_eq!(long.lines[0].len(), 4096, "one line is cut at 4 KiB");
    }
}
