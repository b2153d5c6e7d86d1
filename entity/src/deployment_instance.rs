//! A deployment on one node: what it should run (set by rollouts) and what the reconciler last saw there.

use sea_orm::entity::prelude::*;

/// One row of `deployment_instance`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_instance")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The deployment.
    pub deployment_id: String,
    /// The node.
    pub node_id: String,
    /// The revision this node should run; `None`: none (its containers are removed).
    pub desired_revision: Option<i32>,
    /// Removed from this node by a user although the target still chooses it.
    pub excluded: bool,
    /// Stopped on this node by a user.
    pub stopped: bool,
    /// A restart was asked for at this time.
    pub restart_requested_ms: Option<i64>,
    /// The container running the desired revision.
    pub container_id: Option<String>,
    /// Its name.
    pub container_name: Option<String>,
    /// The revision that container was made for.
    pub observed_revision: Option<i32>,
    /// PENDING, PULLING, CREATING, RUNNING, HEALTHY, UNHEALTHY, STARTING, RESTARTING, CRASH_LOOP, EXITED, STOPPED, UNREACHABLE, NO_ENGINE, CONFLICT, FAILED, REMOVING.
    pub state: String,
    /// Why, in words, when it is not as it should be.
    pub reason: Option<String>,
    /// Docker's health: starting, healthy or unhealthy.
    pub health: Option<String>,
    /// The last exit code.
    pub exit_code: Option<i64>,
    /// Whether the last exit was the kernel's OOM killer.
    pub oom_killed: bool,
    /// Docker's restart count of the container.
    pub restart_count: i64,
    /// Since when it runs (the leader's clock), ms.
    pub running_since_ms: Option<i64>,
    /// Failed attempts in a row (for backoff).
    pub failures: i32,
    /// When the next attempt is due.
    pub next_retry_ms: Option<i64>,
    /// Last change.
    pub updated_ms: i64,
}

/// No relations (the foreign keys cascade in the database).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
