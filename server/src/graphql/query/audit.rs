//! The audit log.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::Role,
    graphql::{guard::RoleGuard, types::AuditEvent},
};

/// Audit queries.
#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The newest audit events, newest first (at most 500); `before` pages back from an id.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] limit: i32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEvent>> {
        let state = ctx.data::<AppState>()?;
        let limit = u64::try_from(limit).unwrap_or(0);
        Ok(state
            .audit
            .list(limit, before)
            .await?
            .into_iter()
            .map(AuditEvent)
            .collect())
    }
}
