//! Telemetry queries: a node's readings.

use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};

use crate::{
    AppState,
    access::Role,
    graphql::{guard::RoleGuard, types::Reading},
};

/// Telemetry queries.
#[derive(Default)]
pub struct TelemetryQuery;

#[Object]
impl TelemetryQuery {
    /// A node's readings (of one job, of one metric), at or after `since`: the newest `limit`
    /// (at most 10 000), oldest first.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn readings(
        &self,
        ctx: &Context<'_>,
        node_id: String,
        job: Option<String>,
        metric: Option<String>,
        since: Option<DateTime<Utc>>,
        #[graphql(default = 1000)] limit: i64,
    ) -> Result<Vec<Reading>> {
        let state = ctx.data::<AppState>()?;
        let limit = u64::try_from(limit).unwrap_or(0);
        Ok(state
            .telemetry
            .readings(
                &node_id,
                job.as_deref(),
                metric.as_deref(),
                since.map(|t| t.timestamp_millis()),
                limit,
            )
            .await?
            .into_iter()
            .map(Reading::from)
            .collect())
    }
}
