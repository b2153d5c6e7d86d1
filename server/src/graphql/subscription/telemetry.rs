//! Telemetry subscriptions: a job's log lines as they are stored.

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};

use crate::{
    AppState,
    access::Role,
    error::ApiError,
    graphql::types::{Chunk, LiveFrame, LiveRow, ReadingFrame},
    graphql::{
        guard::RoleGuard,
        stream::resyncing,
        types::{JobLogEvent, JobLogEventKind, JobLogLine},
    },
    telemetry::{LogEvent, service::LiveReadings},
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

    /// Readings as they come in, each once and as it is stored (most before their transaction
    /// commits: a batch that can never be stored, which the leader logs, may have been shown),
    /// of an experiment, a node, a job or a metric (any of these
    /// together; at least one), throttled for this client: at most `fps` frames a second (1 to
    /// 30), each with at most `maxPerFrame` readings (1 to 10 000). When more arrive between two
    /// frames, every other one is left out until they fit, evenly over time (the newest stays),
    /// and `skipped` says how many (reload the series' buckets for the full picture); `resync`
    /// says this client fell behind the feed itself and missed readings.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    // Each argument is one of the subscription's GraphQL arguments, as a client names them.
    #[allow(clippy::too_many_arguments)]
    async fn live_readings(
        &self,
        ctx: &Context<'_>,
        experiment_id: Option<String>,
        node_id: Option<String>,
        job: Option<String>,
        metric: Option<String>,
        #[graphql(default = 4)] fps: i32,
        #[graphql(default = 1000)] max_per_frame: i32,
    ) -> Result<impl Stream<Item = LiveFrame>> {
        let state = ctx.data::<AppState>()?;
        if experiment_id.is_none() && node_id.is_none() && job.is_none() && metric.is_none() {
            return Err(ApiError::BadRequest(
                "name an experiment, a node, a job or a metric whose readings to follow".into(),
            )
            .into());
        }
        if !(1..=30).contains(&fps) {
            return Err(ApiError::BadRequest(format!("fps {fps} must be between 1 and 30")).into());
        }
        if !(1..=10_000).contains(&max_per_frame) {
            return Err(ApiError::BadRequest(format!(
                "maxPerFrame {max_per_frame} must be between 1 and 10000"
            ))
            .into());
        }
        let wanted = move |r: &entity::reading::Model| {
            experiment_id
                .as_deref()
                .is_none_or(|e| r.experiment_id.as_deref() == Some(e))
                && node_id.as_deref().is_none_or(|n| r.node_id == n)
                && job.as_deref().is_none_or(|j| r.job == j)
                && metric.as_deref().is_none_or(|m| r.metric == m)
        };
        let throttle = Throttle {
            rx: state.telemetry.subscribe_readings(),
            period: std::time::Duration::from_millis(1000 / fps as u64),
            next_allowed: tokio::time::Instant::now(),
            max: max_per_frame as usize,
            held: Vec::new(),
            whole: None,
            skipped: 0,
            resync: false,
        };
        // The selection's key, made at the first frame that could share its rendering.
        let selection = std::sync::Arc::default();
        Ok(futures::stream::unfold(
            (throttle, wanted),
            move |(mut t, wanted)| {
                let selection = std::sync::Arc::clone(&selection);
                async move {
                    let (frame, whole) = t.next_frame(&wanted).await?;
                    let frame = LiveFrame {
                        frame,
                        whole,
                        selection,
                    };
                    Some((frame, (t, wanted)))
                }
            },
        ))
    }
}

/// One client's throttle over the live readings feed.
/// Leading-edge: after a quiet spell the first readings go out at once (latency is what the
/// ingester takes, not a tick's wait); then at most one frame per period, holding what comes
/// in between.
struct Throttle {
    rx: tokio::sync::broadcast::Receiver<LiveReadings>,
    period: std::time::Duration,
    next_allowed: tokio::time::Instant,
    max: usize,
    held: Vec<LiveRow>,
    /// The chunk `held` is the whole of, when it is (see `LiveFrame`).
    whole: Option<Chunk>,
    skipped: i64,
    resync: bool,
}

impl Throttle {
    /// Gathers until a frame may go and has something to send, with the chunk it is the whole
    /// of, if it is; `None` when the feed closed.
    async fn next_frame(
        &mut self,
        wanted: &(impl Fn(&entity::reading::Model) -> bool + Send),
    ) -> Option<(ReadingFrame, Option<Chunk>)> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let pending = !self.held.is_empty() || self.resync;
            if pending && tokio::time::Instant::now() >= self.next_allowed {
                let whole = self
                    .whole
                    .take()
                    .filter(|_| self.skipped == 0 && !self.resync);
                let frame = ReadingFrame {
                    rows: std::mem::take(&mut self.held),
                    skipped: self.skipped,
                    resync: self.resync,
                };
                self.skipped = 0;
                self.resync = false;
                self.next_allowed = tokio::time::Instant::now() + self.period;
                return Some((frame, whole));
            }
            tokio::select! {
                got = self.rx.recv() => match got {
                    Ok(Some(rows)) => {
                        let before = self.held.len();
                        self.held.extend(
                            (0..rows.len())
                                .filter(|&i| wanted(&rows[i]))
                                .map(|i| LiveRow(rows.clone(), i)),
                        );
                        let added = self.held.len() - before;
                        if added > 0 {
                            self.whole = (before == 0 && added == rows.len()).then(|| rows.clone());
                        }
                        while self.held.len() > self.max {
                            self.whole = None;
                            // Thin evenly: every other reading goes, counted from the
                            // newest, which stays (a chart shows it as the current value).
                            let before = self.held.len();
                            let mut i = 0;
                            self.held.retain(|_| {
                                i += 1;
                                (before - i).is_multiple_of(2)
                            });
                            self.skipped += (before - self.held.len()) as i64;
                        }
                    }
                    Ok(None) | Err(RecvError::Lagged(_)) => self.resync = true,
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep_until(self.next_allowed), if pending => {}
            }
        }
    }
}
