//! Experiment profile queries.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        types::{ProfileCheck, ProfileRun, ProfileStep, StoredProfile},
    },
};

/// Profile queries.
#[derive(Default)]
pub struct ProfileQuery;

#[Object]
impl ProfileQuery {
    /// Every stored profile, by name.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn profiles(&self, ctx: &Context<'_>) -> Result<Vec<StoredProfile>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .profiles
            .list()
            .await?
            .into_iter()
            .map(StoredProfile::from)
            .collect())
    }

    /// One stored profile; null when there is none.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn profile(&self, ctx: &Context<'_>, name: String) -> Result<Option<StoredProfile>> {
        let state = ctx.data::<AppState>()?;
        match state.profiles.get(&name).await {
            Ok(p) => Ok(Some(p.into())),
            Err(crate::error::ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads and checks a profile (against an experiment's nodes, when `experimentId` is given;
    /// else against every node) and lists what it would do: every problem with its line and
    /// column, and the dry run's timeline.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn check_profile(
        &self,
        ctx: &Context<'_>,
        source: String,
        experiment_id: Option<String>,
    ) -> Result<ProfileCheck> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .profiles
            .check(&source, experiment_id.as_deref())
            .await?
            .into())
    }

    /// The profile runs of an experiment, newest first.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn profile_runs(
        &self,
        ctx: &Context<'_>,
        experiment_id: String,
    ) -> Result<Vec<ProfileRun>> {
        let state = ctx.data::<AppState>()?;
        let e = state.experiments.find(&experiment_id).await?;
        Ok(state
            .profiles
            .runs(&e.id)
            .await?
            .into_iter()
            .map(ProfileRun::from)
            .collect())
    }

    /// The steps of a profile run: each action it began, with what happened.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn profile_steps(&self, ctx: &Context<'_>, run_id: String) -> Result<Vec<ProfileStep>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .profiles
            .steps(&run_id)
            .await?
            .into_iter()
            .map(ProfileStep::from)
            .collect())
    }
}
