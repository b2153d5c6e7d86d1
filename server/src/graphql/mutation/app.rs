//! App mutations: build a version, deploy (build if needed, then run as the deployment
//! `app-<name>`; a newer version rolls out), remove an app. Operators act; every one is in the
//! audit log, its target `app/version` or the app. Uploads go through `POST /upload/bundle`;
//! start, stop, restart, logs and rollback through the app's deployment.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::{Principal, Role},
    deployments::spec::{KeyValue, Target},
    graphql::{
        guard::{RoleGuard, audited},
        types::AppVersion,
    },
};

/// App mutations.
#[derive(Default)]
pub struct AppMutation;

fn actor(ctx: &Context<'_>) -> String {
    ctx.data_opt::<Principal>()
        .map(Principal::actor)
        .unwrap_or_default()
}

#[Object]
impl AppMutation {
    /// Builds a version on the leader's Docker engine and keeps the image (install). Returns at
    /// once; `appBuildLog` streams the build and `appVersion` gives its end.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn build_app(
        &self,
        ctx: &Context<'_>,
        name: String,
        version: String,
    ) -> Result<AppVersion> {
        let state = ctx.data::<AppState>()?;
        let target = format!("{name}/{version}");
        let work = state.apps.build(&name, &version);
        Ok(AppVersion(
            audited(ctx, "buildApp", Some(&target), work).await?,
        ))
    }

    /// Runs a version as the deployment `app-<name>` on `target` (needed the first time; later
    /// it keeps its nodes unless given). A deployed app given a newer version rolls out to it,
    /// batch by batch, with rollback on failure. `env` sets the app's parameters, checked
    /// against their types; the others take their defaults. A built version is deployed before
    /// this returns; one not built is built first (`appBuildLog` follows it) and deployed when
    /// its build ends: `app { deployment }` then shows it, `deployError` says if it failed.
    /// Returns the version.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn deploy_app(
        &self,
        ctx: &Context<'_>,
        name: String,
        version: String,
        target: Option<Target>,
        #[graphql(default)] env: Vec<KeyValue>,
    ) -> Result<AppVersion> {
        let state = ctx.data::<AppState>()?;
        let actor = actor(ctx);
        let target_name = format!("{name}/{version}");
        let work = state.apps.deploy(&name, &version, target, env, &actor);
        Ok(AppVersion(
            audited(ctx, "deployApp", Some(&target_name), work).await?,
        ))
    }

    /// Removes an app: its deployment (its containers leave every node), its versions, their
    /// bundles, and its images on the leader's engine.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn remove_app(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let work = state.apps.remove(&name);
        audited(ctx, "removeApp", Some(&name), work).await?;
        Ok(true)
    }
}
