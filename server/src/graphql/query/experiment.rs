//! Experiment queries.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::Role,
    graphql::{guard::RoleGuard, types::Experiment},
};

/// Experiment queries.
#[derive(Default)]
pub struct ExperimentQuery;

#[Object]
impl ExperimentQuery {
    /// Every experiment (only running ones when `running`), newest first.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn experiments(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] running: bool,
    ) -> Result<Vec<Experiment>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .experiments
            .list(running)
            .await?
            .into_iter()
            .map(Experiment)
            .collect())
    }

    /// One experiment, by id or by name; null when there is none.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn experiment(&self, ctx: &Context<'_>, id: String) -> Result<Option<Experiment>> {
        let state = ctx.data::<AppState>()?;
        match state.experiments.find(&id).await {
            Ok(e) => Ok(Some(Experiment(e))),
            Err(crate::error::ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
