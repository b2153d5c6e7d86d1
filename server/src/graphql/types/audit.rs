//! GraphQL type of an audit log entry.

use async_graphql::Object;

use chrono::{DateTime, Utc};

/// One audit log entry.
pub struct AuditEvent(pub entity::audit_event::Model);

#[Object]
impl AuditEvent {
    /// Increasing id.
    async fn id(&self) -> i64 {
        self.0.id
    }
    /// When (leader's clock).
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// Who: `user:<name>`, `token:<name> (<user>)` or `anonymous`.
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    /// What: the operation.
    async fn action(&self) -> &str {
        &self.0.action
    }
    /// What it acted on.
    async fn target(&self) -> Option<&str> {
        self.0.target.as_deref()
    }
    /// `ok`, or the error code.
    async fn outcome(&self) -> &str {
        &self.0.outcome
    }
    /// More detail (the error message for a refused operation).
    async fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }
}

/// What an item of the live audit feed is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum AuditFeedKind {
    /// A new audit event (in `entry`).
    Entry,
    /// The subscriber fell behind and missed events: reload `auditLog`.
    Resync,
}

/// One item of the live audit feed.
#[derive(async_graphql::SimpleObject)]
pub struct AuditFeedEvent {
    /// What it is.
    pub kind: AuditFeedKind,
    /// The event, for `ENTRY`.
    pub entry: Option<AuditEvent>,
}
