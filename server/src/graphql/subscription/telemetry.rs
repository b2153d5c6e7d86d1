//! Telemetry subscriptions: a job's log lines as they are stored.

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        stream::resyncing,
        types::{JobLogEvent, JobLogEventKind, JobLogLine},
    },
    telemetry::LogEvent,
};

/// Telemetry subscriptions.
#[derive(Default)]
pub struct TelemetrySubscription;

#[Subscription]
impl TelemetrySubscription {
    /// Each new log line of job `name` on node `nodeId` (a program's output, the agent's words
    /// about the job), or `RESYNC` when this subscriber fell behind (reload the job's `logs`).
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn job_logs(
        &self,
        ctx: &Context<'_>,
        node_id: String,
        name: String,
    ) -> Result<impl Stream<Item = JobLogEvent>> {
        let state = ctx.data::<AppState>()?;
        let events = resyncing(
            state.telemetry.subscribe_logs(),
            |e: LogEvent| e,
            || LogEvent { line: None },
        );
        Ok(events.filter_map(move |e| {
            let event = match e.line {
                None => Some(JobLogEvent {
                    kind: JobLogEventKind::Resync,
                    line: None,
                }),
                Some(l) if l.node_id == node_id && l.job == name => Some(JobLogEvent {
                    kind: JobLogEventKind::Line,
                    line: Some(JobLogLine::from(l)),
                }),
                Some(_) => None,
            };
            futures::future::ready(event)
        }))
    }
}
