//! Live audit events. A client that falls behind gets one `RESYNC` item instead of unbounded
//! buffering or a silent gap (see `graphql::stream`): it reloads `auditLog`.

use async_graphql::{Context, Result, Subscription};
use futures::Stream;

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        stream::resyncing,
        types::{AuditEvent, AuditFeedEvent, AuditFeedKind},
    },
};

/// Audit subscriptions.
#[derive(Default)]
pub struct AuditSubscription;

#[Subscription]
impl AuditSubscription {
    /// Every audit event from now on: `ENTRY` with the event, or `RESYNC` (no event) when this
    /// client fell behind and missed some; reload `auditLog` then.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn audit_events(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = AuditFeedEvent>> {
        let state = ctx.data::<AppState>()?;
        Ok(resyncing(
            state.audit.subscribe(),
            |e| AuditFeedEvent {
                kind: AuditFeedKind::Entry,
                entry: Some(AuditEvent(e)),
            },
            || AuditFeedEvent {
                kind: AuditFeedKind::Resync,
                entry: None,
            },
        ))
    }
}
