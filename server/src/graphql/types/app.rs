//! App types: an app, its versions (bundle, parameters, build), and a build's log lines.

use async_graphql::{Context, Enum, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{app, app_version as version};

use super::Deployment;
use crate::{
    AppState,
    images::{
        apps::{self, state},
        bundles::{BundleKind, Param},
    },
};

/// Where a version's build is.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BuildState {
    /// Uploaded, not built.
    Stored,
    /// Building.
    Building,
    /// Built: its image is on the leader's engine.
    Built,
    /// The build failed (`buildError` says why).
    Failed,
}

impl BuildState {
    /// From the stored name.
    pub fn of(s: &str) -> Self {
        match s {
            state::STORED => BuildState::Stored,
            state::BUILDING => BuildState::Building,
            state::BUILT => BuildState::Built,
            _ => BuildState::Failed,
        }
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// An app: bundles uploaded as versions, run as the deployment `app-<name>`.
pub struct App(pub app::Model);

#[Object]
impl App {
    /// Its name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What it does.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Its tags.
    async fn tags(&self) -> Vec<String> {
        serde_json::from_str(&self.0.tags).unwrap_or_default()
    }
    /// Who uploaded its first version.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When.
    async fn created_at(&self) -> DateTime<Utc> {
        time(self.0.created_ms)
    }
    /// Its versions, newest first.
    async fn versions(&self, ctx: &Context<'_>) -> Result<Vec<AppVersion>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .apps
            .versions(&self.0.name)
            .await?
            .into_iter()
            .map(AppVersion)
            .collect())
    }
    /// The deployment it runs as (`app-<name>`), once deployed.
    async fn deployment(&self, ctx: &Context<'_>) -> Result<Option<Deployment>> {
        let state = ctx.data::<AppState>()?;
        match state
            .deployments
            .find(&apps::deployment_name(&self.0.name))
            .await
        {
            Ok(d) => Ok(Some(Deployment(d))),
            Err(crate::error::ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// One version of an app.
pub struct AppVersion(pub version::Model);

#[Object]
impl AppVersion {
    /// Its id.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// The app.
    async fn app(&self) -> &str {
        &self.0.app
    }
    /// Its name.
    async fn version(&self) -> &str {
        &self.0.version
    }
    /// Its bundle's type.
    async fn kind(&self) -> BundleKind {
        BundleKind::parse(&self.0.kind).unwrap_or(BundleKind::Dockerfile)
    }
    /// What it does.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Its parameters: environment variables with types and defaults.
    async fn params(&self) -> Vec<Param> {
        apps::params(&self.0)
    }
    /// The bundle's SHA-256, hex.
    async fn bundle_sha256(&self) -> &str {
        &self.0.bundle_sha256
    }
    /// The bundle's size, bytes.
    async fn bundle_bytes(&self) -> i64 {
        self.0.bundle_bytes
    }
    /// Whether its bundle is kept (a fast deploy keeps none: it cannot be built again).
    async fn bundle_kept(&self) -> bool {
        self.0.bundle_path.is_some()
    }
    /// Where it is built: `leader` (once, then sent to the nodes) or `node` (on each node's own
    /// engine), as its `app.yaml` says.
    async fn build_on(&self) -> &str {
        &self.0.build_on
    }
    /// Where its build is.
    async fn build_state(&self) -> BuildState {
        BuildState::of(&self.0.build_state)
    }
    /// The last build's output (its last 256 KiB); while it builds, `appBuildLog` streams it.
    async fn build_log(&self) -> &str {
        &self.0.build_log
    }
    /// Why the build failed.
    async fn build_error(&self) -> Option<&str> {
        self.0.build_error.as_deref()
    }
    /// Why its last deploy failed (one that waited for the build ran after `deployApp` returned).
    async fn deploy_error(&self) -> Option<&str> {
        self.0.deploy_error.as_deref()
    }
    /// The image it builds: `trellis-app/<app>:<version>`.
    async fn image(&self) -> &str {
        &self.0.image
    }
    /// The built image's id.
    async fn image_id(&self) -> Option<&str> {
        self.0.image_id.as_deref()
    }
    /// Who uploaded it.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When.
    async fn created_at(&self) -> DateTime<Utc> {
        time(self.0.created_ms)
    }
    /// When its build ended.
    async fn built_at(&self) -> Option<DateTime<Utc>> {
        self.0.built_ms.map(time)
    }
}

/// A line of a build's log, or its end.
#[derive(SimpleObject)]
pub struct BuildLogLine {
    /// The line (empty for a state change).
    pub line: String,
    /// Its number in the log, from 0.
    pub seq: i32,
    /// The build's state after it.
    pub state: BuildState,
}
