//! Pending nodes and join tokens.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        types::{JoinToken, PendingNode},
    },
};

/// Enrollment queries.
#[derive(Default)]
pub struct EnrollQuery;

#[Object]
impl EnrollQuery {
    /// Nodes that asked to join and wait for an operator's approval, oldest first.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn pending_nodes(&self, ctx: &Context<'_>) -> Result<Vec<PendingNode>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .enroll
            .pending()
            .await?
            .into_iter()
            .map(PendingNode)
            .collect())
    }

    /// Join tokens (never the tokens themselves), newest first.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn join_tokens(&self, ctx: &Context<'_>) -> Result<Vec<JoinToken>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .enroll
            .join_tokens()
            .await?
            .into_iter()
            .map(JoinToken)
            .collect())
    }
}
