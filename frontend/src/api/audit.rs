//! The audit log and its live feed.

use serde::Deserialize;

use super::{DateTime, operation};

operation!(
    /// The newest audit events.
    AuditLog,
    "src/operations/audit.graphql"
);
operation!(
    /// Live audit events, decoded as [`AuditEventData`].
    AuditEvents,
    "src/operations/audit.graphql"
);

/// One audit row, as the log query returns it.
pub type AuditRow = audit_log::AuditFields;

pub use audit_events::AuditFeedKind;

/// What the audit feed sends, decoded straight into the log's [`AuditRow`]: the subscription asks
/// for the same `AuditFields` fragment as the log query, so its JSON has the log's shape.
#[derive(Deserialize)]
pub struct AuditEventData {
    /// The event.
    #[serde(rename = "auditEvents")]
    pub audit_events: AuditEvent,
}

/// One event of the audit feed.
#[derive(Deserialize)]
pub struct AuditEvent {
    /// A new entry, or `RESYNC`: this page fell behind and must reload the log.
    pub kind: AuditFeedKind,
    /// The new entry (none for a resync).
    pub entry: Option<AuditRow>,
}
