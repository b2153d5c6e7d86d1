//! Telemetry queries: a node's readings.

use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        types::{IngestQueue, Reading, ReadingBucket, RetentionRule, Storage},
    },
    telemetry::service::{Selection, SeriesKey},
};

/// Telemetry queries.
#[derive(Default)]
pub struct TelemetryQuery;

#[Object]
impl TelemetryQuery {
    /// Readings of a node or of an experiment (one of the two at least; of one job, of one
    /// metric), at or after `since`: the newest `limit` (at most 10 000), oldest first.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    // Each argument is one of the query's GraphQL arguments, as a client names them.
    #[allow(clippy::too_many_arguments)]
    async fn readings(
        &self,
        ctx: &Context<'_>,
        node_id: Option<String>,
        experiment_id: Option<String>,
        job: Option<String>,
        metric: Option<String>,
        since: Option<DateTime<Utc>>,
        #[graphql(default = 1000)] limit: i64,
    ) -> Result<Vec<Reading>> {
        let state = ctx.data::<AppState>()?;
        let limit = u64::try_from(limit).unwrap_or(0);
        let of = Selection {
            node_id: node_id.as_deref(),
            experiment_id: experiment_id.as_deref(),
            job: job.as_deref(),
            metric: metric.as_deref(),
        };
        Ok(state
            .telemetry
            .readings(&of, since.map(|t| t.timestamp_millis()), limit)
            .await?
            .into_iter()
            .map(Reading::from)
            .collect())
    }

    /// One series (a node's job's metric; only its readings in `experimentId` when given) from
    /// `from` to `to`, downsampled to at most `points`
    /// (1 to 10 000) time buckets of equal width, each with the average, lowest and highest value
    /// and the number of readings; buckets with no reading are left out. Buckets of a minute or
    /// more are whole minutes on a grid aligned to the minute (the first may start before
    /// `from`, holding nothing before it), read from per-minute rollups: a month of 1 Hz
    /// readings draws in one request, exactly.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    // Each argument is one of the query's GraphQL arguments, as a client names them.
    #[allow(clippy::too_many_arguments)]
    async fn reading_series(
        &self,
        ctx: &Context<'_>,
        node_id: String,
        job: String,
        metric: String,
        experiment_id: Option<String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[graphql(default = 500)] points: i64,
    ) -> Result<Vec<ReadingBucket>> {
        let state = ctx.data::<AppState>()?;
        let range = (from.timestamp_millis(), to.timestamp_millis());
        let key = SeriesKey {
            node_id: &node_id,
            job: &job,
            metric: &metric,
            experiment_id: experiment_id.as_deref(),
        };
        Ok(state
            .telemetry
            .series(&key, range, points)
            .await?
            .into_iter()
            .map(ReadingBucket::from)
            .collect())
    }

    /// What the database holds (size, readings, series, log lines) and the retention rules.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn storage(&self, ctx: &Context<'_>) -> Result<Storage> {
        let state = ctx.data::<AppState>()?;
        let s = state.retention.storage().await?;
        Ok(Storage {
            database_bytes: s.database_bytes,
            readings: s.readings,
            series: s.series,
            log_lines: s.log_lines,
            retention: state
                .retention
                .rules()
                .await?
                .into_iter()
                .map(RetentionRule::from)
                .collect(),
        })
    }

    /// The ingester's queue of batches waiting to be stored.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn ingest_queue(&self, ctx: &Context<'_>) -> Result<IngestQueue> {
        let t = &ctx.data::<AppState>()?.telemetry;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(IngestQueue {
            depth: count(t.queue_depth()),
            high_water: count(t.queue_high_water()),
            capacity: count(crate::telemetry::service::INGEST_QUEUE),
        })
    }
}
