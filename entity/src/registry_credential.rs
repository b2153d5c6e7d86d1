//! A registry's credentials, kept by the leader for nodes' pulls. The secret is never returned
//! by the API nor logged.

use sea_orm::entity::prelude::*;

/// One row of `registry_credential`.
#[derive(Clone, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "registry_credential")]
pub struct Model {
    /// The registry's host (and port): `registry.local:5000`, `docker.io`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub server: String,
    /// The user name.
    pub username: String,
    /// The password or token.
    pub secret: String,
    /// Who set it last.
    pub updated_by: String,
    /// When, ms since the epoch.
    pub updated_ms: i64,
}

/// Shown without its secret.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("secret", &"<hidden>")
            .finish()
    }
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
