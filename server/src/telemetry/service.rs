//! The telemetry service: queries over readings and job logs, the live feed of log lines, the
//! nodes' pump calibrations, and the door to the ingester (a bounded queue: when the database is
//! slower than the agents, the MQTT gate holds their telemetry publishes back ([`Backlog`]) and
//! MQTT flow control holds the agents back, rather than anything being dropped).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use entity::{job_log, node, reading, reading_series, telemetry_stream};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::{broadcast, mpsc};
use trellis_proto::{Action, Calibrations, LogBatch, PumpCalibration, ReadingBatch};

use super::ingest::{MINUTE_MS, Minute};
use crate::error::{ApiError, ApiResult};

/// `a / b` rounded up (`b` > 0).
fn ceil_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0)
}

/// Where [`Telemetry::add_buckets`] reads a series from.
#[derive(Clone, Copy)]
enum Table {
    /// The readings themselves.
    Readings,
    /// Their per-minute rollups (`reading_minute`).
    Minutes,
}

/// Batches waiting for the ingester; past this the gate holds a node's next batch and relays
/// it, and the bridge waits (back-pressure).
pub const INGEST_QUEUE: usize = 256;
/// Capacity of the log-line feed; a subscriber further behind gets a resync.
pub const LOG_EVENTS: usize = 4096;
/// Most readings one query returns.
pub const MAX_READINGS_PER_QUERY: u64 = 10_000;
/// Most buckets one series query returns.
pub const MAX_POINTS: i64 = 10_000;
/// Most log lines one query returns.
pub const MAX_LOG_LINES_PER_QUERY: u64 = 1_000;

/// How many batches wait for the ingester, shared by the MQTT gate, the bridge's router and the
/// ingester. The embedded broker acknowledges a QoS 1 publish as soon as it has it and keeps a
/// bounded log per topic (4 MiB), overwriting what a slow subscriber has not read yet, so
/// back-pressure that stopped at the bridge would lose readings inside the broker: it must
/// reach the publishers, and the gate is where it can. The gate therefore counts the telemetry
/// publishes it relays, the router those it receives, the queue those it holds (queued, or in
/// the transaction being stored), and the gate holds a node's next telemetry publish while they
/// add up to [`INGEST_QUEUE`] or more ([`Backlog::admit`]).
///
/// Through the embedded broker the gate hands a node's batches to the ingester's queue itself
/// ([`Backlog::hand`]) whenever nothing it relayed is still on its way: the broker and the
/// bridge are two loopback hops and a decode that a live chart waited for. It relays the rest
/// (a full queue, something still in transit, a payload it cannot read), and the bridge takes
/// everything behind an external broker. Heartbeats count as relayed too, so a node's readings
/// never overtake the heartbeat that brings its clock offset (sent first on each connect).
#[derive(Clone, Default)]
pub struct Backlog {
    /// In the queue or being stored.
    depth: Arc<AtomicUsize>,
    high_water: Arc<AtomicUsize>,
    /// Relayed to the broker by the gate, in total.
    relayed: Arc<AtomicUsize>,
    /// Received by the router and queued (or dropped as unreadable), in total; never more than
    /// `relayed` (a resync may have counted some already).
    arrived: Arc<AtomicUsize>,
    drained: Arc<tokio::sync::Notify>,
    /// The ingester's queue, once the telemetry service has started (weak: the queue closes, and
    /// the ingester stops, when the service is gone).
    queue: Arc<std::sync::OnceLock<mpsc::WeakSender<Batch>>>,
    /// When the gate last relayed one, ms since the Unix epoch.
    last_relay_ms: Arc<std::sync::atomic::AtomicI64>,
}

/// A relayed message not queued this long after the gate's last relay is taken as lost (the
/// broker dropped it: a connection taken over, no subscriber; its agent sends it again), so the
/// gate hands batches over again.
const IN_TRANSIT_FOR_AT_MOST_MS: i64 = 2_000;

/// Longest the gate holds one publish. Past it the publish goes on: a count that went wrong
/// (messages the broker dropped for want of a subscriber) can slow the nodes down, never stop
/// them; the broker's per-topic log takes what little then passes.
const MAX_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

impl Backlog {
    /// Batches in the queue or being stored now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// The most batches that were ever in the queue or being stored at once.
    pub fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    /// Batches on their way to the ingester or in its queue.
    fn pending(&self) -> usize {
        let in_transit = self
            .relayed
            .load(Ordering::SeqCst)
            .saturating_sub(self.arrived.load(Ordering::SeqCst));
        self.depth() + in_transit
    }

    /// For the gate: returns once fewer than [`INGEST_QUEUE`] batches are pending (or after
    /// [`MAX_HOLD`]). The gate then hands the publish to the ingester ([`Backlog::hand`]) or
    /// relays it ([`Backlog::relaying`]).
    pub async fn admit(&self) {
        let until = tokio::time::Instant::now() + MAX_HOLD;
        loop {
            // Registered before the check, so a drain in between is not missed.
            let drained = self.drained.notified();
            if self.pending() < INGEST_QUEUE || tokio::time::Instant::now() >= until {
                break;
            }
            // A bounded wait too: a missed wake-up costs 50 ms, never a stuck connection.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), drained).await;
        }
    }

    /// For the gate: a telemetry publish or a heartbeat goes to the broker.
    pub fn relaying(&self) {
        self.last_relay_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::SeqCst);
        self.relayed.fetch_add(1, Ordering::SeqCst);
    }

    /// For the gate: a publish it counted with [`Backlog::relaying`] did not reach the broker.
    pub fn not_relayed(&self) {
        let _ = self
            .relayed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1));
    }

    /// For the gate: puts `batch` in the ingester's queue, if the queue has room and nothing the
    /// gate relayed is still on its way to it (a node's batches reach the queue in the order it
    /// sent them). `Err` gives the batch back: relay it.
    pub fn hand(&self, batch: Batch) -> Result<(), Batch> {
        let Some(queue) = self.queue.get().and_then(mpsc::WeakSender::upgrade) else {
            return Err(batch);
        };
        let relayed = self.relayed.load(Ordering::SeqCst);
        if relayed > self.arrived.load(Ordering::SeqCst) {
            let since =
                chrono::Utc::now().timestamp_millis() - self.last_relay_ms.load(Ordering::SeqCst);
            if since < IN_TRANSIT_FOR_AT_MOST_MS {
                return Err(batch);
            }
            tracing::debug!("telemetry relayed to the broker never arrived: taken as lost");
            self.arrived.fetch_max(relayed, Ordering::SeqCst);
        }
        // Counted before it is in the queue, as `submit` does: the ingester may take it at once.
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        match queue.try_send(batch) {
            Ok(()) => {
                self.high_water.fetch_max(depth, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(e.into_inner())
            }
        }
    }

    /// For the router: a telemetry message from the broker is in the ingester's queue (or was
    /// dropped as unreadable).
    pub fn arrived(&self) {
        let relayed = self.relayed.load(Ordering::SeqCst);
        let _ = self
            .arrived
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| {
                (a < relayed).then_some(a + 1)
            });
    }

    /// For the bridge, on (re)subscribing: whatever was on its way before is gone (a clean
    /// session), so nothing is in transit.
    pub fn resync(&self) {
        self.arrived
            .store(self.relayed.load(Ordering::SeqCst), Ordering::SeqCst);
        self.drained.notify_waiters();
    }

    fn add(&self) {
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        self.high_water.fetch_max(depth, Ordering::Relaxed);
    }

    /// `n` batches are stored (or given up on).
    pub(super) fn done(&self, n: usize) {
        self.depth.fetch_sub(n, Ordering::Relaxed);
        self.drained.notify_waiters();
    }
}

/// Whether `topic` carries readings or log lines (what the ingester stores).
pub fn is_telemetry_topic(topic: &str) -> bool {
    trellis_proto::parse_topic(topic).is_some_and(|p| {
        matches!(
            p.kind,
            trellis_proto::TopicKind::Readings | trellis_proto::TopicKind::Logs
        )
    })
}

/// Whether the gate counts a publish on `topic` in the [`Backlog`] when it relays it: readings
/// and log lines, and heartbeats (readings must not overtake the clock offset one brings).
pub fn counted_in_backlog(topic: &str) -> bool {
    trellis_proto::parse_topic(topic).is_some_and(|p| {
        matches!(
            p.kind,
            trellis_proto::TopicKind::Readings
                | trellis_proto::TopicKind::Logs
                | trellis_proto::TopicKind::Heartbeat
        )
    })
}

/// A batch for the ingester, with the node it came from.
#[derive(Debug)]
pub enum Batch {
    /// Readings.
    Readings(String, ReadingBatch),
    /// Log lines.
    Logs(String, LogBatch),
}

/// Which readings: of a node or an experiment (or both), of one job, of one metric.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// The node's.
    pub node_id: Option<&'a str>,
    /// The experiment's.
    pub experiment_id: Option<&'a str>,
    /// The job's.
    pub job: Option<&'a str>,
    /// This metric.
    pub metric: Option<&'a str>,
}

/// One series: a node's job's metric (in one experiment when given).
#[derive(Debug, Clone, Copy)]
pub struct SeriesKey<'a> {
    /// The node.
    pub node_id: &'a str,
    /// The job.
    pub job: &'a str,
    /// The metric.
    pub metric: &'a str,
    /// Only the readings taken in this experiment.
    pub experiment_id: Option<&'a str>,
}

/// One time bucket of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Its start, ms since the Unix epoch.
    pub start_ms: i64,
    /// Its width, ms.
    pub width_ms: i64,
    /// The average of its readings.
    pub avg: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
    /// How many readings it holds.
    pub count: i64,
}

/// A stored log line for live subscribers (`None` line: the subscriber fell behind).
#[derive(Debug, Clone)]
pub struct LogEvent {
    /// The line as stored.
    pub line: Option<job_log::Model>,
}

/// Readings one transaction stored, for live subscribers (`None`: the subscriber fell behind).
pub type LiveReadings = Option<Arc<Vec<reading::Model>>>;

/// Capacity of the live readings feed, in messages of at most [`LIVE_CHUNK`] readings (so at
/// most 128 000 readings wait for the slowest subscriber); one further behind gets a resync.
pub const LIVE_READINGS: usize = 256;
/// Most readings in one message of the live feed.
pub const LIVE_CHUNK: usize = 500;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    db: DatabaseConnection,
    queue: mpsc::Sender<Batch>,
    backlog: Backlog,
    logs: broadcast::Sender<LogEvent>,
    live: broadcast::Sender<LiveReadings>,
}

impl Telemetry {
    /// The service and the ingester that stores what it is given (run it with
    /// [`crate::telemetry::Ingester::run`]).
    pub fn new(db: DatabaseConnection) -> (Self, super::Ingester) {
        Telemetry::with_backlog(db, Backlog::default())
    }

    /// Like [`Telemetry::new`], counting the batches waiting in `backlog` (which the MQTT gate
    /// also holds).
    pub fn with_backlog(db: DatabaseConnection, backlog: Backlog) -> (Self, super::Ingester) {
        let (queue, rx) = mpsc::channel(INGEST_QUEUE);
        // One telemetry service per backlog: a second one's ingester would never get the gate's.
        if backlog.queue.set(queue.downgrade()).is_err() {
            tracing::error!(
                "a second telemetry service on one backlog: the gate relays to the first"
            );
        }
        let (logs, _) = broadcast::channel(LOG_EVENTS);
        let (live, _) = broadcast::channel(LIVE_READINGS);
        let ingester =
            super::Ingester::new(db.clone(), rx, logs.clone(), live.clone(), backlog.clone());
        (
            Telemetry {
                db,
                queue,
                backlog,
                logs,
                live,
            },
            ingester,
        )
    }

    /// Hands a batch to the ingester, waiting while its queue is full.
    pub async fn submit(&self, batch: Batch) {
        self.backlog.add();
        if self.queue.send(batch).await.is_err() {
            self.backlog.done(1);
            tracing::error!("the ingester has stopped: a telemetry batch was not stored");
        }
    }

    /// The backlog the gate and the bridge share with the ingester.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// Batches waiting to be stored.
    pub fn queue_depth(&self) -> usize {
        self.backlog.depth()
    }

    /// The most batches that ever waited at once since the leader started: how close the
    /// database came to holding the agents back.
    pub fn queue_high_water(&self) -> usize {
        self.backlog.high_water()
    }

    /// The live feed of stored readings, a transaction's worth at a time.
    pub fn subscribe_readings(&self) -> broadcast::Receiver<LiveReadings> {
        self.live.subscribe()
    }

    /// The live feed of stored log lines.
    pub fn subscribe_logs(&self) -> broadcast::Receiver<LogEvent> {
        self.logs.subscribe()
    }

    /// Readings of a node or an experiment (of one job, one metric), at or after `since_ms`, the
    /// newest `limit` in time order.
    pub async fn readings(
        &self,
        of: &Selection<'_>,
        since_ms: Option<i64>,
        limit: u64,
    ) -> ApiResult<Vec<reading::Model>> {
        if limit == 0 || limit > MAX_READINGS_PER_QUERY {
            return Err(ApiError::BadRequest(format!(
                "limit {limit} must be between 1 and {MAX_READINGS_PER_QUERY}"
            )));
        }
        if of.node_id.is_none() && of.experiment_id.is_none() {
            return Err(ApiError::BadRequest(
                "name a node or an experiment whose readings to read".into(),
            ));
        }
        let (job, metric) = (of.job, of.metric);
        let mut q = reading::Entity::find();
        if let Some(node_id) = of.node_id {
            q = q.filter(reading::Column::NodeId.eq(node_id));
        }
        if let Some(e) = of.experiment_id {
            q = q.filter(reading::Column::ExperimentId.eq(e));
        }
        if let Some(job) = job {
            q = q.filter(reading::Column::Job.eq(job));
        }
        if let Some(metric) = metric {
            q = q.filter(reading::Column::Metric.eq(metric));
        }
        if let Some(since) = since_ms {
            q = q.filter(reading::Column::TimeMs.gte(since));
        }
        let mut rows = q
            .order_by_desc(reading::Column::TimeMs)
            .order_by_desc(reading::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// One series (a node's job's metric) from `from_ms` to `to_ms`, in at most `points` time
    /// buckets of equal width, each with the average, lowest and highest value and how many
    /// readings it holds (empty buckets are left out): a month of 1 Hz readings draws in one
    /// request.
    ///
    /// Buckets narrower than a minute are read from the readings (`reading_series_time`). Wider
    /// ones are whole minutes on a grid aligned to the minute (the first bucket may start up to
    /// a minute before `from_ms`; it holds nothing before it) and are read from the per-minute
    /// rollups the ingester keeps (`reading_minute`), with only the partial minutes at the two
    /// ends read from the readings: a month at 1 Hz is 43 200 rollup rows, not 2.6 M readings.
    /// The figures are exact either way.
    pub async fn series(
        &self,
        key: &SeriesKey<'_>,
        (from_ms, to_ms): (i64, i64),
        points: i64,
    ) -> ApiResult<Vec<Bucket>> {
        if !(1..=MAX_POINTS).contains(&points) {
            return Err(ApiError::BadRequest(format!(
                "points {points} must be between 1 and {MAX_POINTS}"
            )));
        }
        if to_ms <= from_ms {
            return Err(ApiError::BadRequest(
                "the range must end after it starts".into(),
            ));
        }
        // Ceiling division: `points` buckets cover the whole range.
        let plain = ceil_div(to_ms - from_ms, points);
        let mut buckets = std::collections::BTreeMap::new();
        let (origin, width) = if plain < MINUTE_MS {
            self.add_buckets(
                &mut buckets,
                key,
                (from_ms, plain),
                Table::Readings,
                (from_ms, to_ms),
            )
            .await?;
            (from_ms, plain)
        } else {
            let origin = from_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
            let width = ceil_div(ceil_div(to_ms - origin, points), MINUTE_MS) * MINUTE_MS;
            // Whole minutes from the rollups; the parts of a minute at either end (if any) from
            // the readings.
            let first_whole = ceil_div(from_ms, MINUTE_MS) * MINUTE_MS;
            let end_whole = to_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
            let grid = (origin, width);
            if first_whole < end_whole {
                self.add_buckets(
                    &mut buckets,
                    key,
                    grid,
                    Table::Minutes,
                    (first_whole, end_whole),
                )
                .await?;
                if from_ms < first_whole {
                    self.add_buckets(
                        &mut buckets,
                        key,
                        grid,
                        Table::Readings,
                        (from_ms, first_whole),
                    )
                    .await?;
                }
                if end_whole < to_ms {
                    self.add_buckets(&mut buckets, key, grid, Table::Readings, (end_whole, to_ms))
                        .await?;
                }
            } else {
                self.add_buckets(&mut buckets, key, grid, Table::Readings, (from_ms, to_ms))
                    .await?;
            }
            grid
        };
        Ok(buckets
            .into_iter()
            .map(|(bucket, m): (i64, Minute)| Bucket {
                start_ms: origin + bucket * width,
                width_ms: width,
                avg: m.sum / m.count as f64,
                min: m.min,
                max: m.max,
                count: m.count,
            })
            .collect())
    }

    /// Adds what `table` holds of the series in `[lo, hi)` to `buckets` (bucket number → sums),
    /// on the grid `(origin, width)`. One `GROUP BY` over one index range.
    async fn add_buckets(
        &self,
        buckets: &mut std::collections::BTreeMap<i64, Minute>,
        key: &SeriesKey<'_>,
        (origin, width): (i64, i64),
        table: Table,
        (lo, hi): (i64, i64),
    ) -> ApiResult<()> {
        let SeriesKey {
            node_id,
            job,
            metric,
            experiment_id,
        } = *key;
        let backend = self.db.get_database_backend();
        let p = |n: usize| match backend {
            sea_orm::DatabaseBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        };
        let (time, aggregates, from) = match table {
            Table::Readings => (
                "time_ms",
                "SUM(value) AS sum, MIN(value) AS min, MAX(value) AS max, COUNT(*) AS count",
                "reading",
            ),
            // SUM of a BIGINT is NUMERIC on Postgres: cast back.
            Table::Minutes => (
                "minute_ms",
                "SUM(sum) AS sum, MIN(min) AS min, MAX(max) AS max, CAST(SUM(count) AS BIGINT) AS count",
                "reading_minute",
            ),
        };
        let sql = format!(
            "SELECT ({time} - {origin}) / {width} AS bucket, {aggregates} FROM {from} \
             WHERE node_id = {node} AND job = {job} AND metric = {metric} \
             AND {time} >= {lo} AND {time} < {hi}{experiment} GROUP BY bucket",
            experiment = if experiment_id.is_some() {
                format!(" AND experiment_id = {}", p(8))
            } else {
                String::new()
            },
            origin = p(1),
            width = p(2),
            node = p(3),
            job = p(4),
            metric = p(5),
            lo = p(6),
            hi = p(7),
        );
        let mut values: Vec<sea_orm::Value> = vec![
            origin.into(),
            width.into(),
            node_id.into(),
            job.into(),
            metric.into(),
            lo.into(),
            hi.into(),
        ];
        if let Some(e) = experiment_id {
            values.push(e.into());
        }
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                backend, sql, values,
            ))
            .await?;
        for r in rows {
            let bucket: i64 = r.try_get("", "bucket")?;
            let m = Minute {
                count: r.try_get("", "count")?,
                sum: r.try_get("", "sum")?,
                min: r.try_get("", "min")?,
                max: r.try_get("", "max")?,
            };
            buckets
                .entry(bucket)
                .and_modify(|b: &mut Minute| b.merge(&m))
                .or_insert(m);
        }
        Ok(())
    }

    /// One page of readings for a streamed export, in time order after `after` (the last
    /// page's last row: time and id): of an experiment (over `reading_experiment_time`), or of
    /// one series, a node's job's metric (over `reading_series_time`). The keyset's leading
    /// `time_ms >= t` makes each page one index range, whatever the table's size. `range` bounds
    /// the time (from inclusive, to exclusive).
    pub async fn export_page(
        &self,
        of: &Selection<'_>,
        range: (Option<i64>, Option<i64>),
        after: Option<(i64, i64)>,
        limit: u64,
    ) -> ApiResult<Vec<reading::Model>> {
        use sea_orm::Condition;
        let one_series = of.node_id.is_some() && of.job.is_some() && of.metric.is_some();
        if of.experiment_id.is_none() && !one_series {
            return Err(ApiError::Internal(
                "an export page is of an experiment or of one series".into(),
            ));
        }
        let mut q = reading::Entity::find();
        if let Some(e) = of.experiment_id {
            q = q.filter(reading::Column::ExperimentId.eq(e));
        }
        if let Some(n) = of.node_id {
            q = q.filter(reading::Column::NodeId.eq(n));
        }
        if let Some(j) = of.job {
            q = q.filter(reading::Column::Job.eq(j));
        }
        if let Some(m) = of.metric {
            q = q.filter(reading::Column::Metric.eq(m));
        }
        if let Some(from) = range.0 {
            q = q.filter(reading::Column::TimeMs.gte(from));
        }
        if let Some(to) = range.1 {
            q = q.filter(reading::Column::TimeMs.lt(to));
        }
        if let Some((time_ms, id)) = after {
            q = q.filter(reading::Column::TimeMs.gte(time_ms)).filter(
                Condition::any()
                    .add(reading::Column::TimeMs.gt(time_ms))
                    .add(reading::Column::Id.gt(id)),
            );
        }
        Ok(q.order_by_asc(reading::Column::TimeMs)
            .order_by_asc(reading::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The (job, metric) series node `node_id` has stored (of one job, one metric), sorted: an
    /// export of a node goes through them one by one.
    pub async fn node_series(
        &self,
        node_id: &str,
        job: Option<&str>,
        metric: Option<&str>,
    ) -> ApiResult<Vec<(String, String)>> {
        let mut q =
            reading_series::Entity::find().filter(reading_series::Column::NodeId.eq(node_id));
        if let Some(j) = job {
            q = q.filter(reading_series::Column::Job.eq(j));
        }
        if let Some(m) = metric {
            q = q.filter(reading_series::Column::Metric.eq(m));
        }
        let set: std::collections::BTreeSet<(String, String)> = q
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| (s.job, s.metric))
            .collect();
        Ok(set.into_iter().collect())
    }

    /// One page of job log lines for an export, oldest first, after row `after_id`: of a node
    /// (one job), or of an experiment.
    pub async fn log_page(
        &self,
        node_id: Option<&str>,
        job: Option<&str>,
        experiment_id: Option<&str>,
        after_id: i64,
        limit: u64,
    ) -> ApiResult<Vec<job_log::Model>> {
        let mut q = job_log::Entity::find().filter(job_log::Column::Id.gt(after_id));
        if let Some(n) = node_id {
            q = q.filter(job_log::Column::NodeId.eq(n));
        }
        if let Some(j) = job {
            q = q.filter(job_log::Column::Job.eq(j));
        }
        if let Some(e) = experiment_id {
            q = q.filter(job_log::Column::ExperimentId.eq(e));
        }
        Ok(q.order_by_asc(job_log::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The series stored for an experiment (or, with `None`, outside any), by node, job and
    /// metric (only `metric`'s when given): the catalog the ingester keeps, no scan of readings.
    pub async fn series_of(
        &self,
        experiment_id: Option<&str>,
        node_id: Option<&str>,
        metric: Option<&str>,
    ) -> ApiResult<Vec<reading_series::Model>> {
        let mut q = reading_series::Entity::find()
            .filter(reading_series::Column::ExperimentId.eq(experiment_id.unwrap_or_default()));
        if let Some(n) = node_id {
            q = q.filter(reading_series::Column::NodeId.eq(n));
        }
        if let Some(m) = metric {
            q = q.filter(reading_series::Column::Metric.eq(m));
        }
        Ok(q.order_by_asc(reading_series::Column::Metric)
            .order_by_asc(reading_series::Column::NodeId)
            .order_by_asc(reading_series::Column::Job)
            .all(&self.db)
            .await?)
    }

    /// The newest `last` log lines of a job, oldest first.
    pub async fn logs(
        &self,
        node_id: &str,
        job: &str,
        last: u64,
    ) -> ApiResult<Vec<job_log::Model>> {
        if last == 0 || last > MAX_LOG_LINES_PER_QUERY {
            return Err(ApiError::BadRequest(format!(
                "last {last} must be between 1 and {MAX_LOG_LINES_PER_QUERY}"
            )));
        }
        let mut rows = job_log::Entity::find()
            .filter(job_log::Column::NodeId.eq(node_id))
            .filter(job_log::Column::Job.eq(job))
            .order_by_desc(job_log::Column::Id)
            .limit(last)
            .all(&self.db)
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Readings and log lines a node's agent reported it had to drop (its outage buffer was
    /// full), over all its runs.
    pub async fn dropped(&self, node_id: &str) -> ApiResult<(i64, i64)> {
        let rows = telemetry_stream::Entity::find()
            .filter(telemetry_stream::Column::NodeId.eq(node_id))
            .all(&self.db)
            .await?;
        let sum = |kind: &str| {
            rows.iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.dropped)
                .sum()
        };
        Ok((sum(super::ingest::READINGS), sum(super::ingest::LOGS)))
    }

    /// Records the pump calibrations a node's agent published.
    pub async fn record_calibrations(&self, node_id: &str, c: &Calibrations) -> ApiResult<()> {
        let Some(n) = node::Entity::find_by_id(node_id).one(&self.db).await? else {
            return Ok(());
        };
        let json = serde_json::to_value(c).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut m = n.into_active_model();
        m.pump_calibrations = Set(Some(json));
        m.update(&self.db).await?;
        Ok(())
    }

    /// Stores a pump's calibration on node `node_id` (its agent keeps it, per pump, and publishes
    /// the list). The agent's refusal is `BAD_REQUEST` in its words; a node that does not answer is
    /// `UNAVAILABLE`.
    pub async fn set_calibration(
        &self,
        bridge: &crate::mqtt::bridge::Bridge,
        node_id: &str,
        calibration: PumpCalibration,
    ) -> ApiResult<PumpCalibration> {
        calibration.check().map_err(ApiError::BadRequest)?;
        let n = node::Entity::find_by_id(node_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("node {node_id:?}")))?;
        if n.state != trellis_proto::NodeState::Online.as_str() {
            return Err(ApiError::Unavailable(format!(
                "node {node_id:?} is {}",
                n.state
            )));
        }
        let result = bridge
            .command(
                node_id,
                Action::SetPumpCalibration(calibration.clone()),
                crate::jobs::service::COMMAND_TIMEOUT,
            )
            .await
            .map_err(|e| ApiError::Unavailable(format!("node {node_id:?}: {e}")))?;
        if !result.ok {
            return Err(ApiError::BadRequest(result.message));
        }
        Ok(calibration)
    }

    /// A node's pump calibrations as its agent last published them.
    pub fn calibrations(n: &node::Model) -> ApiResult<Calibrations> {
        match &n.pump_calibrations {
            None => Ok(Calibrations::default()),
            Some(json) => serde_json::from_value(json.clone()).map_err(|e| {
                ApiError::Internal(format!(
                    "stored calibrations of node {} do not decode: {e}",
                    n.id
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64) -> Batch {
        Batch::Readings(
            "n1".into(),
            ReadingBatch {
                run: "r1".into(),
                seq,
                held: seq,
                dropped: 0,
                series: Vec::new(),
                points: Vec::new(),
            },
        )
    }

    fn seq(b: &Batch) -> u64 {
        match b {
            Batch::Readings(_, r) => r.seq,
            Batch::Logs(_, l) => l.seq,
        }
    }

    #[tokio::test]
    async fn the_gate_hands_batches_over_only_behind_nothing_it_relayed_and_into_room() {
        let backlog = Backlog::default();
        // No telemetry service yet: everything is relayed.
        assert_eq!(backlog.hand(batch(0)).map_err(|b| seq(&b)), Err(0));
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("db");
        let (t, _ingester) = Telemetry::with_backlog(db, backlog.clone());
        assert!(backlog.hand(batch(1)).is_ok());
        assert_eq!(backlog.depth(), 1);
        // One relayed to the broker and not yet queued by the router: the node's next batch
        // must not overtake it.
        backlog.relaying();
        assert_eq!(backlog.hand(batch(2)).map_err(|b| seq(&b)), Err(2));
        assert_eq!(backlog.depth(), 1, "a batch given back is not counted");
        backlog.arrived();
        assert!(backlog.hand(batch(3)).is_ok());
        // A resync after a broker restart forgets what was in transit (it is gone), and the
        // router's arrivals of messages from before it cannot hide the next relayed one.
        backlog.relaying();
        assert!(backlog.hand(batch(4)).is_err());
        backlog.resync();
        backlog.arrived();
        backlog.relaying();
        assert!(
            backlog.hand(batch(4)).is_err(),
            "the relayed one is in transit"
        );
        // One that never arrives is taken as lost 2 s after the gate's last relay.
        let now = chrono::Utc::now().timestamp_millis();
        backlog
            .last_relay_ms
            .store(now - IN_TRANSIT_FOR_AT_MOST_MS - 1, Ordering::SeqCst);
        assert!(backlog.hand(batch(4)).is_ok());
        // A relay whose write failed is not waited for.
        backlog.relaying();
        backlog.not_relayed();
        assert!(backlog.hand(batch(5)).is_ok());
        // A full queue gives the batch back, uncounted.
        for s in 6..INGEST_QUEUE as u64 + 2 {
            assert!(backlog.hand(batch(s)).is_ok(), "batch {s}");
        }
        assert_eq!(backlog.depth(), INGEST_QUEUE);
        let next = INGEST_QUEUE as u64 + 2;
        assert_eq!(backlog.hand(batch(next)).map_err(|b| seq(&b)), Err(next));
        assert_eq!(backlog.depth(), INGEST_QUEUE);
        assert_eq!(backlog.high_water(), INGEST_QUEUE);
        // The service gone, the gate relays: the queue closes for the ingester.
        drop(t);
        backlog.done(INGEST_QUEUE);
        assert!(backlog.hand(batch(next)).is_err());
    }
}
