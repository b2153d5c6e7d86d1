//! Live audit events.

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};

use crate::{
    AppState,
    access::Role,
    graphql::{guard::RoleGuard, types::AuditEvent},
};

/// Audit subscriptions.
#[derive(Default)]
pub struct AuditSubscription;

#[Subscription]
impl AuditSubscription {
    /// Every audit event from now on. A client that falls behind skips what it missed (reload
    /// `auditLog` to fill the gap).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn audit_events(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = AuditEvent>> {
        let state = ctx.data::<AppState>()?;
        let rx = state.audit.subscribe();
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => return Some((AuditEvent(e), rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed())
    }
}
