//! The audit log and its live feed.

use super::{DateTime, operation, same_shape};

operation!(
    /// The newest audit events.
    AuditLog,
    "src/operations/audit.graphql"
);
operation!(
    /// Live audit events. `Serialize`: each is turned into an [`AuditRow`].
    AuditEvents,
    "src/operations/audit.graphql",
    derives "Clone, PartialEq, Serialize"
);

/// One audit row, as the log query returns it.
pub type AuditRow = audit_log::AuditFields;

/// A live event as an [`AuditRow`] (`None` for a resync, which carries no entry).
pub fn event_row(event: &audit_events::ResponseData) -> Option<AuditRow> {
    event.audit_events.entry.as_ref().and_then(same_shape)
}

/// Whether the server says this page fell behind the live feed and must reload the log.
pub fn is_resync(event: &audit_events::ResponseData) -> bool {
    event.audit_events.kind == audit_events::AuditFeedKind::RESYNC
}
