//! One revision of a deployment: the whole spec as JSON, who made it, why, and how its rollout ended.

use sea_orm::entity::prelude::*;

/// One row of `deployment_revision`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_revision")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The deployment.
    pub deployment_id: String,
    /// Its number, from 1.
    pub revision: i32,
    /// The `DeploymentSpec` as JSON.
    pub spec: String,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_ms: i64,
    /// `create`, `edit`, `override:<node>` or `rollback:<from>-><to>`.
    pub cause: String,
    /// What changed from the revision before, one line each.
    pub summary: String,
    /// `rolled_out`, `failed` or `None` while unknown.
    pub outcome: Option<String>,
    /// Why it failed.
    pub outcome_reason: Option<String>,
}

/// No relations (the foreign keys cascade in the database).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
