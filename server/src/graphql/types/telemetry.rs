//! GraphQL types of the telemetry domain: readings, job log lines, pump calibrations.

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};

/// A time in milliseconds since the Unix epoch as a date-time (out-of-range values clamp to the
/// epoch: a node cannot send one, its batches are checked, but a stored row is not trusted).
pub fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// One reading.
#[derive(SimpleObject)]
pub struct Reading {
    /// The job that measured it.
    pub job: String,
    /// What was measured.
    pub metric: String,
    /// Its unit, when it has one.
    pub unit: Option<String>,
    /// When: the node's time corrected by its measured clock offset.
    pub time: DateTime<Utc>,
    /// When, by the node's own clock.
    pub node_time: DateTime<Utc>,
    /// The value.
    pub value: f64,
    /// The node.
    pub node_id: String,
    /// The experiment its node was in when it was taken.
    pub experiment_id: Option<String>,
}

impl From<entity::reading::Model> for Reading {
    fn from(r: entity::reading::Model) -> Self {
        Reading {
            node_id: r.node_id,
            experiment_id: r.experiment_id,
            job: r.job,
            metric: r.metric,
            unit: r.unit,
            time: time(r.time_ms),
            node_time: time(r.node_time_ms),
            value: r.value,
        }
    }
}

/// Readings stored since the last frame, for a live chart.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ReadingFrame {
    /// The frame's readings, in the order they were stored.
    #[graphql(skip)]
    pub rows: Vec<LiveRow>,
    /// How many more were stored but left out to keep the frame within its bound.
    pub skipped: i64,
    /// This client fell behind the feed and missed readings: reload what it shows.
    pub resync: bool,
}

#[async_graphql::ComplexObject]
impl ReadingFrame {
    /// The readings, in the order they were stored, an object each. `series` carries the same
    /// readings in a fraction of the bytes and of the leader's work: what a chart should take.
    async fn readings(&self) -> Vec<Reading> {
        self.rows
            .iter()
            .map(|r| Reading::from(r.get().clone()))
            .collect()
    }

    /// The same readings by series (node, job, metric, experiment), each series' in the order
    /// they were stored, series in the order they first come.
    async fn series(&self) -> Vec<LiveSeries> {
        let mut out: Vec<LiveSeries> = Vec::new();
        /// A series: node, job, metric, experiment.
        type Key<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);
        let mut index: std::collections::HashMap<Key<'_>, usize> = std::collections::HashMap::new();
        // Readings of one series mostly come one after another: the previous one's series is
        // tried before the map (hashing four strings per reading for each of a hundred clients
        // was a twentieth of the leader's work at 100 live charts).
        let mut last: Option<(Key<'_>, usize)> = None;
        for r in self.rows.iter().map(LiveRow::get) {
            let key = (
                r.node_id.as_str(),
                r.job.as_str(),
                r.metric.as_str(),
                r.experiment_id.as_deref(),
            );
            let known = match last {
                Some((k, i)) if k == key => Some(i),
                _ => index.get(&key).copied(),
            };
            let i = match known {
                Some(i) => i,
                None => {
                    index.insert(key, out.len());
                    out.push(LiveSeries {
                        node_id: r.node_id.clone(),
                        job: r.job.clone(),
                        metric: r.metric.clone(),
                        unit: r.unit.clone(),
                        experiment_id: r.experiment_id.clone(),
                        times_ms: super::ScalarList(Vec::new()),
                        values: super::ScalarList(Vec::new()),
                    });
                    out.len() - 1
                }
            };
            last = Some((key, i));
            out[i].times_ms.0.push(r.time_ms);
            out[i].values.0.push(r.value);
        }
        out
    }
}

/// A reading of the live feed, shared by every subscriber's frame (a reference into the chunk the
/// ingester sent, not a copy per client).
#[derive(Clone)]
pub struct LiveRow(pub std::sync::Arc<Vec<entity::reading::Model>>, pub usize);

impl LiveRow {
    /// The reading.
    pub fn get(&self) -> &entity::reading::Model {
        &self.0[self.1]
    }
}

/// One series' readings in a live frame: times and values side by side.
#[derive(SimpleObject)]
pub struct LiveSeries {
    /// The node.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// The metric.
    pub metric: String,
    /// Its unit, when it has one.
    pub unit: Option<String>,
    /// The experiment its node was in.
    pub experiment_id: Option<String>,
    /// When each was taken: ms since the Unix epoch, the node's time corrected by its clock
    /// offset.
    pub times_ms: super::ScalarList<i64>,
    /// The values, in the same order.
    pub values: super::ScalarList<f64>,
}

/// One time bucket of a series: what its readings average, range and count.
#[derive(SimpleObject)]
pub struct ReadingBucket {
    /// Where the bucket starts.
    pub start: DateTime<Utc>,
    /// Its width, milliseconds.
    pub width_ms: i64,
    /// The average of its readings.
    pub avg: f64,
    /// The lowest reading.
    pub min: f64,
    /// The highest reading.
    pub max: f64,
    /// How many readings it holds.
    pub count: i64,
}

impl From<crate::telemetry::service::Bucket> for ReadingBucket {
    fn from(b: crate::telemetry::service::Bucket) -> Self {
        ReadingBucket {
            start: time(b.start_ms),
            width_ms: b.width_ms,
            avg: b.avg,
            min: b.min,
            max: b.max,
            count: b.count,
        }
    }
}

/// The ingester's queue: batches waiting to be stored. When it is full the leader holds the
/// nodes' readings and log lines back (MQTT flow control); nothing is dropped.
#[derive(SimpleObject)]
pub struct IngestQueue {
    /// Batches waiting now.
    pub depth: i64,
    /// The most that ever waited at once since the leader started.
    pub high_water: i64,
    /// How many may wait before the leader holds the agents back.
    pub capacity: i64,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum LogStream {
    /// A program's standard output.
    Stdout,
    /// A program's standard error.
    Stderr,
    /// The agent, about the job (a dose, a failure).
    Agent,
}

/// One log line of a job.
#[derive(SimpleObject)]
pub struct JobLogLine {
    /// The node.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// When (the node's time, corrected).
    pub time: DateTime<Utc>,
    /// Where it came from.
    pub stream: LogStream,
    /// The text.
    pub line: String,
}

impl From<entity::job_log::Model> for JobLogLine {
    fn from(l: entity::job_log::Model) -> Self {
        JobLogLine {
            node_id: l.node_id,
            job: l.job,
            time: time(l.time_ms),
            stream: match l.stream.as_str() {
                "stdout" => LogStream::Stdout,
                "stderr" => LogStream::Stderr,
                _ => LogStream::Agent,
            },
            line: l.line,
        }
    }
}

/// What a `jobLogs` subscription delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum JobLogEventKind {
    /// A new line.
    Line,
    /// The subscriber fell behind and missed lines: reload the job's `logs`.
    Resync,
}

/// A new log line, or a resync.
#[derive(SimpleObject)]
pub struct JobLogEvent {
    /// Which.
    pub kind: JobLogEventKind,
    /// The line, for `LINE`.
    pub line: Option<JobLogLine>,
}

/// A dosing pump's calibration on a node.
#[derive(SimpleObject)]
pub struct PumpCalibration {
    /// The pump (`media`, `waste`, `alt_media`).
    pub pump: String,
    /// The BCM pin that switches it.
    pub pin: i32,
    /// Millilitres per second when on.
    pub ml_per_second: f64,
}

impl From<trellis_proto::PumpCalibration> for PumpCalibration {
    fn from(c: trellis_proto::PumpCalibration) -> Self {
        PumpCalibration {
            pump: c.pump,
            pin: i32::from(c.pin),
            ml_per_second: c.ml_per_second,
        }
    }
}

/// What the database holds.
#[derive(SimpleObject)]
pub struct Storage {
    /// Its size on disk, bytes (SQLite: the file without its write-ahead log; Postgres: the
    /// database).
    pub database_bytes: i64,
    /// Readings stored.
    pub readings: i64,
    /// Series stored (per node, job, metric and experiment).
    pub series: i64,
    /// Job log lines stored.
    pub log_lines: i64,
    /// The retention rules; none: everything is kept.
    pub retention: Vec<RetentionRule>,
}

/// Readings of a metric (or of every metric without a rule of its own) older than `days` are
/// deleted, in small batches in the background.
#[derive(SimpleObject)]
pub struct RetentionRule {
    /// The metric; null for every metric without a rule of its own.
    pub metric: Option<String>,
    /// Days kept.
    pub days: i32,
    /// Who set it.
    pub updated_by: String,
    /// When.
    pub updated: DateTime<Utc>,
}

impl From<entity::retention_rule::Model> for RetentionRule {
    fn from(r: entity::retention_rule::Model) -> Self {
        RetentionRule {
            metric: (!r.metric.is_empty()).then_some(r.metric),
            days: r.days,
            updated_by: r.updated_by,
            updated: time(r.updated_ms),
        }
    }
}

/// What a retention pass deleted.
#[derive(SimpleObject)]
pub struct RetentionSwept {
    /// Readings deleted.
    pub readings_deleted: i64,
    /// Series left empty.
    pub series_emptied: i64,
}
