//! Telemetry mutations: retention rules (admins), and a retention pass run now.

use async_graphql::{Context, Object, Result};

use crate::{
    AppState,
    access::{Principal, Role},
    graphql::{
        guard::{RoleGuard, audited},
        types::{RetentionRule, RetentionSwept},
    },
};

/// Telemetry mutations.
#[derive(Default)]
pub struct TelemetryMutation;

#[Object]
impl TelemetryMutation {
    /// Keeps `days` days (1 to 36 500) of readings of `metric`, or of every metric without a rule
    /// of its own when `metric` is null; `days` null removes the rule. Older readings are deleted
    /// in small batches in the background (every minute). Returns every rule.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_retention(
        &self,
        ctx: &Context<'_>,
        metric: Option<String>,
        days: Option<i32>,
    ) -> Result<Vec<RetentionRule>> {
        let state = ctx.data::<AppState>()?;
        let actor = ctx
            .data_opt::<Principal>()
            .map(Principal::actor)
            .unwrap_or_default();
        let target = metric.clone().unwrap_or_else(|| "every metric".into());
        let work = state.retention.set_rule(metric.as_deref(), days, &actor);
        Ok(audited(ctx, "setRetention", Some(&target), work)
            .await?
            .into_iter()
            .map(RetentionRule::from)
            .collect())
    }

    /// Runs a retention pass now (instead of within the minute) and says what it deleted.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn apply_retention(&self, ctx: &Context<'_>) -> Result<RetentionSwept> {
        let state = ctx.data::<AppState>()?;
        let work = state.retention.pass(chrono::Utc::now().timestamp_millis());
        let s = audited(ctx, "applyRetention", None, work).await?;
        Ok(RetentionSwept {
            readings_deleted: s.readings as i64,
            series_emptied: s.series_emptied as i64,
        })
    }
}
