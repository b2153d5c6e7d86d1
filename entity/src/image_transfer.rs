//! A transfer of an image from the leader's Docker engine into a node's (sideload).

use sea_orm::entity::prelude::*;

/// One row of `image_transfer`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "image_transfer")]
pub struct Model {
    /// Its id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The node whose engine receives the image.
    pub node_id: String,
    /// The image as named (a tag or an id).
    pub image: String,
    /// The image's id on the leader's engine (`sha256:...`), once known.
    pub image_id: Option<String>,
    /// `queued`, `checking`, `loading`, `done` or `failed`.
    pub state: String,
    /// Bytes sent so far.
    pub bytes: i64,
    /// The image's size, bytes, once known.
    pub total_bytes: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Why it runs: `sideloadImage`, or the deployment that needs it.
    pub cause: String,
    /// Who asked (a user, or `reconciler`).
    pub created_by: String,
    /// When it was asked for, ms since the epoch.
    pub started_ms: i64,
    /// When it ended.
    pub finished_ms: Option<i64>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
