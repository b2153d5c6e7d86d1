//! Image types: a transfer of an image to a node (sideload) with its progress, and what a prune
//! did.

use async_graphql::{Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::image_transfer as transfer;

pub use crate::images::NodeImage;
use crate::images::{prune, state};

/// Where a transfer is.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TransferState {
    /// Waiting for a free slot (`--sideload-parallel`).
    Queued,
    /// Looking at both engines and the node's free disk.
    Checking,
    /// Bytes moving.
    Loading,
    /// The node has the image.
    Done,
    /// It did not work; `error` says why.
    Failed,
}

impl TransferState {
    fn of(s: &str) -> Self {
        match s {
            state::QUEUED => TransferState::Queued,
            state::CHECKING => TransferState::Checking,
            state::LOADING => TransferState::Loading,
            state::DONE => TransferState::Done,
            _ => TransferState::Failed,
        }
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// An image sent from the leader's Docker engine into a node's.
pub struct ImageTransfer(pub transfer::Model);

#[Object]
impl ImageTransfer {
    /// Its id.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// The node whose engine receives the image.
    async fn node_id(&self) -> &str {
        &self.0.node_id
    }
    /// The image as named.
    async fn image(&self) -> &str {
        &self.0.image
    }
    /// The image's id (`sha256:...`), once known.
    async fn image_id(&self) -> Option<&str> {
        self.0.image_id.as_deref()
    }
    /// Where it is.
    async fn state(&self) -> TransferState {
        TransferState::of(&self.0.state)
    }
    /// Bytes sent so far.
    async fn bytes(&self) -> i64 {
        self.0.bytes
    }
    /// The image's size, bytes, once known (the archive sent is close to it).
    async fn total_bytes(&self) -> Option<i64> {
        self.0.total_bytes
    }
    /// How far, 0 to 100: 100 only when done.
    async fn percent(&self) -> Option<f64> {
        if self.0.state == state::DONE {
            return Some(100.0);
        }
        let total = self.0.total_bytes.filter(|t| *t > 0)?;
        Some((self.0.bytes as f64 * 100.0 / total as f64).clamp(0.0, 99.0))
    }
    /// Why it failed; for a done transfer, a note (already there, no disk figure).
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// Why it ran: `sideloadImage`, or the deployment that needed the image.
    async fn cause(&self) -> &str {
        &self.0.cause
    }
    /// Who asked (a user, or `reconciler`).
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When it was asked for.
    async fn started_at(&self) -> DateTime<Utc> {
        time(self.0.started_ms)
    }
    /// When it ended.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_ms.map(time)
    }
}

/// A transfer changed, or `resync` (the subscriber fell behind: reload the list).
pub struct ImageTransferEvent {
    /// The transfer as it is now (`None` with `resync`).
    pub transfer: Option<ImageTransfer>,
    /// Events were lost.
    pub resync: bool,
}

#[Object]
impl ImageTransferEvent {
    /// The transfer as it is now.
    async fn transfer(&self) -> Option<&ImageTransfer> {
        self.transfer.as_ref()
    }
    /// Events were lost: reload.
    async fn resync(&self) -> bool {
        self.resync
    }
}

/// What a prune of one node's images did.
#[derive(SimpleObject)]
pub struct PruneReport {
    /// The node.
    pub node_id: String,
    /// Images removed (tags, or ids of untagged build layers).
    pub removed: Vec<String>,
    /// Images kept: a deployment runs them, or they are its rollback image.
    pub kept: Vec<String>,
    /// Images left because a container still uses them.
    pub in_use: Vec<String>,
    /// Bytes freed.
    pub freed_bytes: i64,
}

impl PruneReport {
    /// The report of `node_id`.
    pub fn of(node_id: &str, r: prune::Report) -> Self {
        PruneReport {
            node_id: node_id.to_owned(),
            removed: r.removed,
            kept: r.kept,
            in_use: r.in_use,
            freed_bytes: i64::try_from(r.freed_bytes).unwrap_or(i64::MAX),
        }
    }
}

/// A registry the leader keeps credentials for. The password is never returned.
pub struct RegistryCredential(pub entity::registry_credential::Model);

#[Object]
impl RegistryCredential {
    /// The registry's host (and port), as in an image's name.
    async fn server(&self) -> &str {
        &self.0.server
    }
    /// The user name.
    async fn username(&self) -> &str {
        &self.0.username
    }
    /// Who set it last.
    async fn updated_by(&self) -> &str {
        &self.0.updated_by
    }
    /// When.
    async fn updated_at(&self) -> DateTime<Utc> {
        time(self.0.updated_ms)
    }
}
