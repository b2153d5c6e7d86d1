//! One version of an app: its bundle, parameters and build.

use sea_orm::entity::prelude::*;

/// One row of `app_version`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "app_version")]
pub struct Model {
    /// Its id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The app's name.
    pub app: String,
    /// The version's name.
    pub version: String,
    /// `py3`, `dockerfile` or `nodered`.
    pub kind: String,
    /// What it does.
    pub description: Option<String>,
    /// Its parameters, a JSON array (see `images::bundles::Param`).
    pub params: String,
    /// The stored bundle, relative to the data directory; `None` once dropped (fast deploy).
    pub bundle_path: Option<String>,
    /// SHA-256 of the bundle as uploaded, hex.
    pub bundle_sha256: String,
    /// The bundle's size as uploaded, bytes.
    pub bundle_bytes: i64,
    /// The top directory the bundle's files sit in, stripped when building.
    pub strip_dir: Option<String>,
    /// Where it builds: `leader` (then sent to the nodes) or `node` (each node's own engine).
    pub build_on: String,
    /// `stored`, `building`, `built` or `failed`.
    pub build_state: String,
    /// The build's output (bounded).
    pub build_log: String,
    /// Why the build failed.
    pub build_error: Option<String>,
    /// Why the last deploy of it failed (a deploy waiting for its build runs after the
    /// request that asked for it).
    pub deploy_error: Option<String>,
    /// The image it builds: `trellis-app/<app>:<version>`.
    pub image: String,
    /// The built image's id.
    pub image_id: Option<String>,
    /// Who uploaded it.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_ms: i64,
    /// When its build finished.
    pub built_ms: Option<i64>,
}

/// No relations (the foreign key cascades in the database).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
