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

/// A live event as an [`AuditRow`].
pub fn event_row(event: &audit_events::ResponseData) -> Option<AuditRow> {
    same_shape(&event.audit_events)
}
