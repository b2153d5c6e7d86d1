//! App queries. Viewers read.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        types::{App, AppVersion},
    },
};

/// App queries.
#[derive(Default)]
pub struct AppQuery;

#[Object]
impl AppQuery {
    /// Every app, by name.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn apps(&self, ctx: &Context<'_>) -> Result<Vec<App>> {
        let state = ctx.data::<AppState>()?;
        Ok(state.apps.list().await?.into_iter().map(App).collect())
    }

    /// One app.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn app(&self, ctx: &Context<'_>, name: String) -> Result<App> {
        let state = ctx.data::<AppState>()?;
        Ok(App(state.apps.get(&name).await?))
    }

    /// One version of an app.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn app_version(
        &self,
        ctx: &Context<'_>,
        name: String,
        version: String,
    ) -> Result<AppVersion> {
        let state = ctx.data::<AppState>()?;
        Ok(AppVersion(state.apps.version(&name, &version).await?))
    }
}
