//! The ingester: the background loop that stores the readings and log lines agents send. It owns
//! the receiving end of the telemetry queue; the database holds everything else (how far each
//! agent run's numbered stream is stored, in `telemetry_stream`), so it can be stopped at any point
//! and started again: a batch that did commit is skipped by its numbers when it comes again, and
//! one that did not is sent again by its agent, which drops only what the `stored` marks this loop
//! publishes after each commit say is in the database.
//!
//! Each turn takes every batch waiting (up to [`BATCHES_PER_TRANSACTION`]) and stores them in one
//! transaction: per batch, it takes its stream's next expected number (read once per group),
//! skips what is below it (a QoS 1 batch delivered twice) and moves the number on; the readings
//! kept go in a few large multi-row inserts, and each stream's number is saved once. Log lines beyond [`MAX_LOG_LINES_PER_JOB`] per job are deleted oldest first, and counted on
//! the job. Times are corrected by the node's measured clock offset (both are kept).
//!
//! Live subscribers get a group's readings before its transaction when the loop knows, from its
//! earlier commits, what rows they make ([`Known`]: each stream's next number, each node's clock
//! offset and experiment spans); the rows stored are then made from the same facts, so what was
//! shown is what is stored. Readings it cannot make yet (a new run, a node first seen, a change of
//! experiments' nodes) go live after the commit.
//!
//! When the database is unreachable or busy, the same batches are tried again (after a pause that
//! doubles up to 5 s) until they are stored: the queue fills meanwhile and the MQTT gate holds the
//! nodes' telemetry publishes (`Backlog`), which holds the agents back through MQTT flow
//! control; their outage buffers keep the rest. Any other
//! database error is the batches' own: the group is stored batch by batch, and a batch that still
//! fails is logged with its node and numbers and skipped, so one bad batch never stops the rest.

use std::{
    collections::{BTreeSet, HashMap, hash_map::Entry},
    time::Duration,
};

use chrono::Utc;
use entity::{job, job_log, node, reading, reading_minute, reading_series, telemetry_stream};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
    Value,
    sea_query::{Expr, ExprTrait},
};
use tokio::sync::{broadcast, mpsc};
use trellis_proto::{ReadingBatch, Series, Stored};

use super::service::{Backlog, Batch, LiveReadings, LogEvent};
use crate::experiments::Membership;

/// A day, ms.
const DAY_MS: i64 = 86_400_000;
/// Most batches stored in one transaction.
pub const BATCHES_PER_TRANSACTION: usize = 64;
/// Log lines kept per job; older ones are deleted (and counted in `job.logs_dropped`).
pub const MAX_LOG_LINES_PER_JOB: u64 = 2_000;
/// `telemetry_stream.kind` of readings.
pub const READINGS: &str = "readings";
/// `telemetry_stream.kind` of log lines.
pub const LOGS: &str = "logs";

/// The loop's state.
pub struct Ingester {
    db: DatabaseConnection,
    rx: mpsc::Receiver<Batch>,
    logs: broadcast::Sender<LogEvent>,
    live: broadcast::Sender<LiveReadings>,
    backlog: Backlog,
    /// Batches taken from the queue and not yet done with: still counted in the backlog when a
    /// panic ends the loop, and given back by the next one.
    in_hand: usize,
    /// What the last commits left, to send readings live before they are stored.
    known: Known,
}

impl Ingester {
    pub(super) fn new(
        db: DatabaseConnection,
        rx: mpsc::Receiver<Batch>,
        logs: broadcast::Sender<LogEvent>,
        live: broadcast::Sender<LiveReadings>,
        backlog: Backlog,
    ) -> Self {
        Ingester {
            db,
            rx,
            logs,
            live,
            backlog,
            in_hand: 0,
            known: Known::default(),
        }
    }

    /// Stores batches until the queue closes (the leader is shutting down), and after each
    /// transaction tells each node whose batches it held how far it is stored (`Stored`), so its
    /// agent drops only what is in the database.
    ///
    /// Supervised ([`crate::infra::supervise::supervise_owning`]): a panic loses only the group
    /// in hand, whose agents send it again since no `stored` mark covers it.
    pub async fn run(&mut self, bridge: crate::mqtt::bridge::Bridge) {
        if self.in_hand > 0 {
            tracing::warn!(
                batches = self.in_hand,
                "telemetry batches lost with a panic; their agents send them again"
            );
            self.backlog.done(self.in_hand);
            self.in_hand = 0;
            // Whether the group in hand committed is not known.
            self.known = Known::default();
        }
        while let Some(first) = self.rx.recv().await {
            let mut group = vec![first];
            while group.len() < BATCHES_PER_TRANSACTION {
                match self.rx.try_recv() {
                    Ok(b) => group.push(b),
                    Err(_) => break,
                }
            }
            self.in_hand = group.len();
            crate::infra::supervise::panic_point("ingester");
            // Live subscribers first: the readings whose rows are known without the database
            // go before the transaction (the rows it stores are these); the others after it.
            let changes = crate::experiments::membership_changes();
            let sent = match self.live.receiver_count() > 0 {
                true => {
                    let (rows, sent) = self.known.rows(&group, changes);
                    if !rows.is_empty() {
                        self.send_live(rows);
                        // The subscribers' tasks the send woke wait in this worker's queue: let
                        // them write their frames before the transaction takes a core.
                        tokio::task::yield_now().await;
                    }
                    sent
                }
                false => vec![false; group.len()],
            };
            let outcome = match self.store_retrying(&group, &sent).await {
                Ok(o) => {
                    self.known.learn(&o, changes);
                    o
                }
                Err(e) => {
                    tracing::warn!(error = %e, batches = group.len(), "a group of telemetry batches failed; storing them one by one");
                    let mut all = Outcome::default();
                    for (batch, sent) in group.iter().zip(&sent) {
                        match self
                            .store_retrying(std::slice::from_ref(batch), std::slice::from_ref(sent))
                            .await
                        {
                            Ok(o) => {
                                all.readings.extend(o.readings);
                                all.lines.extend(o.lines);
                                all.gaps.extend(o.gaps);
                            }
                            Err(e) => {
                                let (node, kind, seq) = match batch {
                                    Batch::Readings(n, b) => (n, READINGS, b.seq),
                                    Batch::Logs(n, b) => (n, LOGS, b.seq),
                                };
                                tracing::error!(error = %e, node, kind, seq, "a telemetry batch could not be stored: skipped");
                            }
                        }
                    }
                    // Whether the failed group's transaction committed is not known.
                    self.known = Known::default();
                    all
                }
            };
            self.backlog.done(group.len());
            self.in_hand = 0;
            // Before the stored marks, which read the database again.
            self.send_live(outcome.readings);
            for line in outcome.lines {
                // No subscriber is not an error.
                let _ = self.logs.send(LogEvent { line: Some(line) });
            }
            let mut told = BTreeSet::new();
            for batch in &group {
                let (node, run) = match batch {
                    Batch::Readings(n, b) => (n, &b.run),
                    Batch::Logs(n, b) => (n, &b.run),
                };
                if told.insert((node.clone(), run.clone())) {
                    match stored(&self.db, node, run).await {
                        Ok(mut s) => {
                            s.gap = outcome.gaps.contains(&(node.clone(), run.clone()));
                            bridge.tell_stored(node, &s);
                        }
                        Err(e) => tracing::warn!(error = %e, node, "cannot read the stored marks"),
                    }
                }
            }
        }
    }

    /// Sends readings to live subscribers, in chunks of at most LIVE_CHUNK, so the feed's bound
    /// (in messages) bounds readings.
    fn send_live(&self, rows: Vec<reading::Model>) {
        if rows.is_empty() {
            return;
        }
        let chunks: Vec<Vec<reading::Model>> = match rows.len() <= super::service::LIVE_CHUNK {
            true => vec![rows],
            false => rows
                .chunks(super::service::LIVE_CHUNK)
                .map(<[_]>::to_vec)
                .collect(),
        };
        for chunk in chunks {
            // No subscriber is not an error.
            let _ = self.live.send(Some(std::sync::Arc::new(chunk)));
        }
    }

    /// Stores a group, trying again while the database is unreachable or busy; any other error is
    /// returned. `sent[i]`: batch `i`'s readings went live already, made by [`Known::rows`].
    async fn store_retrying(&self, group: &[Batch], sent: &[bool]) -> Result<Outcome, DbErr> {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.store(group, sent).await {
                Ok(outcome) => {
                    crate::infra::db::note_write_ok();
                    return Ok(outcome);
                }
                Err(e) if is_outage(&e) => {
                    if let Some(why) = crate::infra::db::outage(&e) {
                        crate::infra::db::note_outage(why);
                    }
                    tracing::error!(error = %e, batches = group.len(), retry_in_ms = pause.as_millis() as u64, "could not store telemetry; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    /// Stores a group as a turn of the loop would (for tests elsewhere in the crate).
    #[cfg(test)]
    pub(crate) async fn store_for_test(&self, group: &[Batch]) {
        self.store(group, &vec![false; group.len()])
            .await
            .expect("stored");
    }

    /// Stores a group of batches in one transaction; returns the log lines stored, and the
    /// (node, run) pairs that sent a batch past a gap (not stored: they are to send again).
    ///
    /// Each stream's next number and each node's clock offset are read once per group and kept
    /// in memory while the group's batches move them; the readings of the whole group go in a
    /// few large multi-row inserts ([`insert_readings`]) and each stream's number is written
    /// once, at the end, in the same transaction.
    ///
    /// The readings of a batch sent live already (`sent[i]`, by [`Known::rows`]) are made with
    /// the offset and spans those rows were made with, so what is stored is what was shown; the
    /// others go live after the commit, in the outcome.
    async fn store(&self, group: &[Batch], sent: &[bool]) -> Result<Outcome, DbErr> {
        let txn = self.db.begin().await?;
        let mut offsets: HashMap<&str, i64> = HashMap::new();
        let mut streams: HashMap<(&str, &str, &str), Stream> = HashMap::new();
        let mut rows: Vec<ReadingRow<'_>> = Vec::new();
        let mut stored_lines = Vec::new();
        let mut gaps = BTreeSet::new();
        let mut jobs_with_logs = BTreeSet::new();
        let since = earliest(group);
        let membership = Membership::load(
            &txn,
            group.iter().map(|b| match b {
                Batch::Readings(n, _) | Batch::Logs(n, _) => n.as_str(),
            }),
            since,
        )
        .await?;
        let mut catalog = Catalog::default();
        // Copies for live subscribers, only when there are some.
        let live = self.live.receiver_count() > 0;
        let mut live_rows: Vec<reading::Model> = Vec::new();
        for (i, batch) in group.iter().enumerate() {
            let (node_id, kind, run, seq, held, dropped, len) = match batch {
                Batch::Readings(n, b) => (
                    n,
                    READINGS,
                    &b.run,
                    b.seq,
                    b.held,
                    b.dropped,
                    b.points.len(),
                ),
                Batch::Logs(n, b) => (n, LOGS, &b.run, b.seq, b.held, b.dropped, b.lines.len()),
            };
            let stream = match streams.entry((node_id.as_str(), run.as_str(), kind)) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let next = next_seq(&txn, node_id, run, kind).await?;
                    e.insert(Stream {
                        in_db: next.is_some(),
                        next,
                        dropped: 0,
                        moved: false,
                    })
                }
            };
            let next = stream.next;
            let Some(skip) = admit(next, seq, held) else {
                gaps.insert((node_id.clone(), run.clone()));
                continue;
            };
            if skip >= len && next.is_some() {
                continue;
            }
            let offset = match offsets.get(node_id.as_str()) {
                Some(o) => *o,
                None => {
                    let o =
                        crate::infra::db::by_key(node::Entity::find_by_id(node_id.as_str()), &txn)
                            .await?
                            .and_then(|n| n.clock_offset_ms)
                            .unwrap_or(0);
                    offsets.insert(node_id.as_str(), o);
                    o
                }
            };
            match batch {
                Batch::Readings(_, b) => {
                    let from = rows.len();
                    match sent.get(i).copied().unwrap_or(false) {
                        true => {
                            let offset =
                                self.known.offsets.get(node_id).map_or(offset, |(o, _)| *o);
                            rows.extend(reading_rows(
                                node_id,
                                offset,
                                b,
                                skip,
                                &self.known.membership,
                            ));
                        }
                        false => {
                            rows.extend(reading_rows(node_id, offset, b, skip, &membership));
                            if live {
                                live_rows.extend(rows[from..].iter().map(ReadingRow::model));
                            }
                        }
                    }
                }
                Batch::Logs(_, b) => {
                    for l in b.lines.iter().skip(skip) {
                        let row = job_log::ActiveModel {
                            node_id: Set(node_id.clone()),
                            job: Set(l.job.clone()),
                            time_ms: Set(l.at_ms.saturating_sub(offset)),
                            experiment_id: Set(membership
                                .at(node_id, l.at_ms.saturating_sub(offset))
                                .map(str::to_owned)),
                            stream: Set(l.stream.as_str().to_owned()),
                            // Postgres text refuses NUL; a well-behaved agent sends none.
                            line: Set(l.line.replace('\0', "\u{FFFD}")),
                            ..Default::default()
                        };
                        let stored = job_log::Entity::insert(row)
                            .exec_with_returning(&txn)
                            .await?;
                        jobs_with_logs.insert((node_id.clone(), l.job.clone()));
                        stored_lines.push(stored);
                    }
                }
            }
            stream.next = Some((seq + len as u64) as i64);
            stream.dropped = dropped;
            stream.moved = true;
        }
        insert_readings(&txn, &mut rows).await?;
        catalog.add_all(&rows);
        let mut next_of = Vec::new();
        for ((node_id, run, kind), s) in streams {
            if let (READINGS, Some(next)) = (kind, s.next) {
                next_of.push(((node_id.to_owned(), run.to_owned()), next));
            }
            if let (true, Some(next)) = (s.moved, s.next) {
                save_seq(&txn, node_id, run, kind, next, s.dropped, s.in_db).await?;
            }
        }
        for (node_id, name) in jobs_with_logs {
            bound_logs(&txn, &node_id, &name).await?;
        }
        catalog.save(&txn).await?;
        txn.commit().await?;
        Ok(Outcome {
            readings: live_rows,
            lines: stored_lines,
            gaps,
            next: next_of,
            offsets: offsets
                .into_iter()
                .map(|(n, o)| (n.to_owned(), o))
                .collect(),
            membership,
            since,
        })
    }
}

/// Where a batch numbered from `seq` stands against its stream's next number (`None`: the
/// stream's first batch) and the number below which its agent holds nothing (`held`): `None`
/// when it comes past a gap, else how many of its first items are stored already. Below what the
/// agent still holds, a gap is what it dropped (counted); above, it is lost on the way, and the
/// batch waits until the agent sends again from the gap.
fn admit(next: Option<i64>, seq: u64, held: u64) -> Option<usize> {
    let expected = std::cmp::Ord::max(next.unwrap_or(0), i64::try_from(held).unwrap_or(i64::MAX));
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    (seq <= expected).then(|| usize::try_from(expected - seq).unwrap_or(usize::MAX))
}

/// How long a node's clock offset read by a commit is used for readings sent before theirs
/// (the nodes measure it at every heartbeat, 5 s by default): a node silent for longer, whose
/// clock may have been set meanwhile, has its next batch made from the database's offset.
const OFFSET_TRUSTED: Duration = Duration::from_secs(10);

/// What the ingester's last commits left, so a group's readings go to live subscribers before
/// its transaction rather than after it (the transaction's statements and commit were most of
/// a live reading's latency). A batch's rows need its stream's next number, its node's clock
/// offset and experiment spans: the ingester is the only writer of the first, and keeps the
/// other two as its last group read them (spans only while no experiment's nodes changed since:
/// [`crate::experiments::membership_changes`]). A batch whose facts are not known (a new run,
/// a node not seen since the leader started, spans older than those loaded) goes live after its
/// commit, as every batch did before. Forgotten whenever a commit's outcome is not known.
#[derive(Default)]
struct Known {
    /// Each node's readings stream (its agent's current run) and its next number, as the last
    /// commit left them: one per node, so runs of agents that restarted are not kept.
    next: HashMap<String, (String, i64)>,
    /// Each node's clock offset, as the last group of its batches read it, and when.
    offsets: HashMap<String, (i64, std::time::Instant)>,
    /// The nodes' experiment spans, and from which node time on each node's were loaded.
    membership: Membership,
    since: HashMap<String, i64>,
    /// [`crate::experiments::membership_changes`] when the spans were loaded.
    changes: u64,
}

impl Known {
    /// The rows of `group`'s readings that can be made now, as [`Ingester::store`] will make
    /// them; `sent[i]` says whether batch `i`'s are among them.
    fn rows(&mut self, group: &[Batch], changes: u64) -> (Vec<reading::Model>, Vec<bool>) {
        let mut out = Vec::new();
        let mut sent = vec![false; group.len()];
        if changes != self.changes {
            self.membership = Membership::default();
            self.since.clear();
            return (out, sent);
        }
        // Each stream's number as this group's earlier batches move it.
        let mut moved: HashMap<(&str, &str), i64> = HashMap::new();
        // Streams one of whose batches waits for the commit: their later ones wait too (the
        // commit moves the stream's number past what this cannot follow).
        let mut waiting: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (i, batch) in group.iter().enumerate() {
            let Batch::Readings(node_id, b) = batch else {
                continue;
            };
            let key = (node_id.as_str(), b.run.as_str());
            if waiting.contains(&key) {
                continue;
            }
            let known = match moved.get(&key) {
                Some(n) => Some(*n),
                None => self
                    .next
                    .get(node_id)
                    .filter(|(run, _)| *run == b.run)
                    .map(|(_, n)| *n),
            };
            let earliest = b.points.iter().map(|p| p.1).min().unwrap_or(i64::MAX);
            let facts = match (known, self.offsets.get(node_id), self.since.get(node_id)) {
                (Some(next), Some(&(offset, read)), Some(&since))
                    if read.elapsed() < OFFSET_TRUSTED
                        && earliest.saturating_sub(DAY_MS) >= since =>
                {
                    Some((next, offset))
                }
                _ => None,
            };
            let Some((next, offset)) = facts else {
                waiting.insert(key);
                continue;
            };
            let Some(skip) = admit(Some(next), b.seq, b.held) else {
                continue;
            };
            sent[i] = true;
            if skip >= b.points.len() {
                continue;
            }
            out.extend(
                reading_rows(node_id, offset, b, skip, &self.membership)
                    .map(|r| ReadingRow::model(&r)),
            );
            moved.insert(key, (b.seq + b.points.len() as u64) as i64);
        }
        (out, sent)
    }

    /// Keeps what a commit left: made when [`crate::experiments::membership_changes`] was
    /// `changes`.
    fn learn(&mut self, o: &Outcome, changes: u64) {
        if changes != self.changes {
            self.membership = Membership::default();
            self.since.clear();
            self.changes = changes;
        }
        for ((node, run), next) in &o.next {
            self.next.insert(node.clone(), (run.clone(), *next));
        }
        let now = std::time::Instant::now();
        for (node, offset) in &o.offsets {
            self.offsets.insert(node.clone(), (*offset, now));
            self.since.insert(node.clone(), o.since);
        }
        self.membership
            .update(o.offsets.iter().map(|(n, _)| n.as_str()), &o.membership);
    }
}

/// One agent run's stream (readings or log lines) while a group is stored.
struct Stream {
    /// The next number expected; `None` before the stream's first batch.
    next: Option<i64>,
    /// Whether `telemetry_stream` has its row (update, not insert).
    in_db: bool,
    /// The run's drop count, as its newest batch says.
    dropped: u64,
    /// Whether a batch of this group moved it (it is to be saved).
    moved: bool,
}

/// One reading as the `reading` table stores it: made by [`reading_rows`], written by
/// [`insert_readings`] in the order of [`READING_COLUMNS`].
struct ReadingRow<'a> {
    node_id: &'a str,
    series: &'a Series,
    time_ms: i64,
    node_time_ms: i64,
    value: f64,
    experiment_id: Option<&'a str>,
}

/// The columns of `reading` the ingester writes, in the order [`ReadingRow::push_values`]
/// gives their values.
const READING_COLUMNS: [&str; 8] = [
    "node_id",
    "job",
    "metric",
    "unit",
    "time_ms",
    "node_time_ms",
    "value",
    "experiment_id",
];

impl ReadingRow<'_> {
    fn push_values(&self, out: &mut Vec<Value>) {
        out.extend([
            Value::from(self.node_id),
            Value::from(self.series.job.as_str()),
            Value::from(self.series.metric.as_str()),
            Value::from(self.series.unit.clone()),
            Value::from(self.time_ms),
            Value::from(self.node_time_ms),
            Value::from(self.value),
            Value::from(self.experiment_id),
        ]);
    }

    /// The row as live subscribers see it (its id is not known yet: 0).
    fn model(&self) -> reading::Model {
        reading::Model {
            id: 0,
            node_id: self.node_id.to_owned(),
            job: self.series.job.clone(),
            metric: self.series.metric.clone(),
            unit: self.series.unit.clone(),
            time_ms: self.time_ms,
            node_time_ms: self.node_time_ms,
            value: self.value,
            experiment_id: self.experiment_id.map(str::to_owned),
        }
    }
}

/// The rows of a batch's readings from the `skip`th on (those before are stored already), the
/// node's time corrected by its clock offset (both kept), each with the experiment its node was
/// in at that time.
fn reading_rows<'a>(
    node_id: &'a str,
    offset: i64,
    b: &'a ReadingBatch,
    skip: usize,
    membership: &'a Membership,
) -> impl Iterator<Item = ReadingRow<'a>> {
    b.points.iter().skip(skip).map(move |&(i, at, value)| {
        let time_ms = at.saturating_sub(offset);
        ReadingRow {
            node_id,
            series: &b.series[i as usize],
            time_ms,
            node_time_ms: at,
            value,
            experiment_id: membership.at(node_id, time_ms),
        }
    })
}

/// Most rows in one insert: 4000 × 8 values stays under SQLite's 32 766 bound parameters
/// (sqlite.org/limits.html, SQLITE_MAX_VARIABLE_NUMBER) and Postgres's 65 535.
const ROWS_PER_INSERT: usize = 4000;

/// Inserts the rows with multi-row inserts of [`ROWS_PER_INSERT`] rows and then of powers of
/// two for the rest, so a dozen prepared statements (sqlx caches them per connection) serve
/// every group whatever its size. The rows are first put in series order (stable, so each
/// series keeps its arrival order, which ids record): the series index then takes each series'
/// rows one after another, which SQLite does markedly faster than interleaved ones.
async fn insert_readings(
    txn: &DatabaseTransaction,
    rows: &mut [ReadingRow<'_>],
) -> Result<(), DbErr> {
    rows.sort_by(|a, b| {
        (a.node_id, &a.series.job, &a.series.metric).cmp(&(
            b.node_id,
            &b.series.job,
            &b.series.metric,
        ))
    });
    let backend = txn.get_database_backend();
    let mut rest: &[ReadingRow<'_>] = rows;
    while !rest.is_empty() {
        let n = if rest.len() >= ROWS_PER_INSERT {
            ROWS_PER_INSERT
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut values = Vec::with_capacity(n * READING_COLUMNS.len());
        for r in chunk {
            r.push_values(&mut values);
        }
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            insert_sql(backend, n),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// `INSERT INTO reading (<READING_COLUMNS>) VALUES (...), ...` for `rows` rows, with the
/// backend's placeholders.
fn insert_sql(backend: DbBackend, rows: usize) -> String {
    use std::fmt::Write;
    let width = READING_COLUMNS.len();
    let mut sql = format!(
        "INSERT INTO reading ({}) VALUES ",
        READING_COLUMNS.join(", ")
    );
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                DbBackend::Postgres => {
                    let _ = write!(sql, "${}", r * width + c + 1);
                }
                _ => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

/// The earliest node time any batch of `group` holds (memberships that closed before it do not
/// matter), with a day's margin for clock offsets (node times are not corrected yet here).
fn earliest(group: &[Batch]) -> i64 {
    group
        .iter()
        .filter_map(|b| match b {
            Batch::Readings(_, b) => b.points.iter().map(|p| p.1).min(),
            Batch::Logs(_, b) => b.lines.iter().map(|l| l.at_ms).min(),
        })
        .min()
        .unwrap_or(0)
        .saturating_sub(DAY_MS)
}

/// What a transaction adds to `reading_series` (per series: the unit, the first and last time,
/// the count) and to `reading_minute` (per series and minute: count, sum, lowest, highest).
/// Keys borrow the group's strings: nothing is allocated per reading.
#[derive(Default)]
struct Catalog<'a> {
    series: HashMap<SeriesOf<'a>, (Option<&'a str>, i64, i64, i64)>,
    minutes: HashMap<(SeriesOf<'a>, i64), Minute>,
}

/// A catalog row's key: node, job, metric, experiment (`""` for none).
type SeriesOf<'a> = (&'a str, &'a str, &'a str, &'a str);

/// The length of a rollup's minute, ms.
pub(crate) const MINUTE_MS: i64 = 60_000;

/// One series' readings in one minute, as `reading_minute` keeps them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Minute {
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Minute {
    fn of(value: f64) -> Minute {
        Minute {
            count: 1,
            sum: value,
            min: value,
            max: value,
        }
    }

    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub(crate) fn merge(&mut self, o: &Minute) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// A run of consecutive rows of one series in one minute, while [`Catalog::add_all`] walks them.
struct Run<'a> {
    key: SeriesOf<'a>,
    minute_ms: i64,
    unit: Option<&'a str>,
    first: i64,
    last: i64,
    agg: Minute,
}

impl<'a> Catalog<'a> {
    /// Adds the rows (in series order, as [`insert_readings`] leaves them: consecutive rows of
    /// one series and minute are summed before they touch a map).
    fn add_all(&mut self, rows: &[ReadingRow<'a>]) {
        let mut run: Option<Run<'a>> = None;
        for r in rows {
            let key = (
                r.node_id,
                r.series.job.as_str(),
                r.series.metric.as_str(),
                r.experiment_id.unwrap_or_default(),
            );
            let minute_ms = r.time_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
            match &mut run {
                Some(cur) if cur.key == key && cur.minute_ms == minute_ms => {
                    cur.agg.add(r.value);
                    cur.first = Ord::min(cur.first, r.time_ms);
                    cur.last = Ord::max(cur.last, r.time_ms);
                }
                _ => {
                    if let Some(done) = run.take() {
                        self.close(done);
                    }
                    run = Some(Run {
                        key,
                        minute_ms,
                        unit: r.series.unit.as_deref(),
                        first: r.time_ms,
                        last: r.time_ms,
                        agg: Minute::of(r.value),
                    });
                }
            }
        }
        if let Some(done) = run {
            self.close(done);
        }
    }

    fn close(&mut self, run: Run<'a>) {
        let e = self
            .series
            .entry(run.key)
            .or_insert((run.unit, run.first, run.last, 0));
        e.1 = Ord::min(e.1, run.first);
        e.2 = Ord::max(e.2, run.last);
        e.3 += run.agg.count;
        match self.minutes.entry((run.key, run.minute_ms)) {
            Entry::Occupied(mut m) => m.get_mut().merge(&run.agg),
            Entry::Vacant(m) => {
                m.insert(run.agg);
            }
        }
    }

    /// Adds to the catalog's rows (one upsert per series) and to the minutes' (multi-row
    /// upserts).
    async fn save(self, txn: &DatabaseTransaction) -> Result<(), DbErr> {
        use sea_orm::sea_query::OnConflict;
        for ((node_id, job, metric, experiment_id), (unit, first, last, count)) in self.series {
            let row = reading_series::ActiveModel {
                node_id: Set(node_id.to_owned()),
                job: Set(job.to_owned()),
                metric: Set(metric.to_owned()),
                experiment_id: Set(experiment_id.to_owned()),
                unit: Set(unit.map(str::to_owned)),
                first_ms: Set(first),
                last_ms: Set(last),
                count: Set(count),
            };
            reading_series::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([
                        reading_series::Column::NodeId,
                        reading_series::Column::Job,
                        reading_series::Column::Metric,
                        reading_series::Column::ExperimentId,
                    ])
                    .value(
                        reading_series::Column::Count,
                        added("reading_series", "count"),
                    )
                    .value(
                        reading_series::Column::FirstMs,
                        kept_if("reading_series", "first_ms", "<"),
                    )
                    .value(
                        reading_series::Column::LastMs,
                        kept_if("reading_series", "last_ms", ">"),
                    )
                    .update_column(reading_series::Column::Unit)
                    .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        }
        let minutes: Vec<_> = self.minutes.into_iter().collect();
        for chunk in minutes.chunks(MINUTES_PER_INSERT) {
            let rows =
                chunk
                    .iter()
                    .map(|(((node_id, job, metric, experiment_id), minute_ms), m)| {
                        reading_minute::ActiveModel {
                            node_id: Set((*node_id).to_owned()),
                            job: Set((*job).to_owned()),
                            metric: Set((*metric).to_owned()),
                            minute_ms: Set(*minute_ms),
                            experiment_id: Set((*experiment_id).to_owned()),
                            count: Set(m.count),
                            sum: Set(m.sum),
                            min: Set(m.min),
                            max: Set(m.max),
                        }
                    });
            reading_minute::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        reading_minute::Column::NodeId,
                        reading_minute::Column::Job,
                        reading_minute::Column::Metric,
                        reading_minute::Column::MinuteMs,
                        reading_minute::Column::ExperimentId,
                    ])
                    .value(
                        reading_minute::Column::Count,
                        added("reading_minute", "count"),
                    )
                    .value(reading_minute::Column::Sum, added("reading_minute", "sum"))
                    .value(
                        reading_minute::Column::Min,
                        kept_if("reading_minute", "min", "<"),
                    )
                    .value(
                        reading_minute::Column::Max,
                        kept_if("reading_minute", "max", ">"),
                    )
                    .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        }
        Ok(())
    }
}

/// On an upsert's conflict: the stored `table.column` plus the new row's.
fn added(table: &str, column: &str) -> sea_orm::sea_query::SimpleExpr {
    Expr::cust(format!("{table}.{column} + excluded.{column}"))
}

/// On an upsert's conflict: the new row's `column` where it is `op` (`<`, `>`) the stored one,
/// else the stored one.
fn kept_if(table: &str, column: &str, op: &str) -> sea_orm::sea_query::SimpleExpr {
    Expr::cust(format!(
        "CASE WHEN excluded.{column} {op} {table}.{column} THEN excluded.{column} ELSE {table}.{column} END"
    ))
}

/// Most rollup rows in one upsert (9 values each, under SQLite's 32 766 bound parameters).
const MINUTES_PER_INSERT: usize = 1000;

/// Whether `e` says the database cannot be reached or is busy now (worth trying again), rather
/// than that this write is wrong.
fn is_outage(e: &DbErr) -> bool {
    if crate::infra::db::outage(e).is_some() {
        return true;
    }
    let text = e.to_string().to_lowercase();
    ["locked", "busy", "connection", "timed out", "i/o", "closed"]
        .iter()
        .any(|w| text.contains(w))
}

/// What a transaction stored: its log lines (for live subscribers), and the (node, run) pairs
/// whose batches came past a gap.
#[derive(Default)]
struct Outcome {
    /// Readings stored and not sent live yet (when there are live subscribers).
    readings: Vec<reading::Model>,
    lines: Vec<job_log::Model>,
    gaps: BTreeSet<(String, String)>,
    /// Each readings stream's (node, run) next number after the commit.
    next: Vec<((String, String), i64)>,
    /// The clock offsets of the nodes whose batches were stored, as the database had them.
    offsets: Vec<(String, i64)>,
    /// The spans of the group's nodes, loaded for node times from `since` on.
    membership: Membership,
    since: i64,
}

/// How far `node`'s run `run` is stored, both streams.
async fn stored(db: &DatabaseConnection, node: &str, run: &str) -> Result<Stored, DbErr> {
    let rows = telemetry_stream::Entity::find()
        .filter(telemetry_stream::Column::NodeId.eq(node))
        .filter(telemetry_stream::Column::Run.eq(run))
        .all(db)
        .await?;
    let next = |kind: &str| {
        rows.iter()
            .find(|r| r.kind == kind)
            .map_or(0, |r| u64::try_from(r.next_seq).unwrap_or(0))
    };
    Ok(Stored {
        run: run.to_owned(),
        readings: next(READINGS),
        logs: next(LOGS),
        gap: false,
    })
}

async fn next_seq(
    txn: &DatabaseTransaction,
    node_id: &str,
    run: &str,
    kind: &str,
) -> Result<Option<i64>, DbErr> {
    Ok(crate::infra::db::by_key(
        telemetry_stream::Entity::find_by_id((node_id.to_owned(), run.to_owned(), kind.to_owned())),
        txn,
    )
    .await?
    .map(|s| s.next_seq))
}

async fn save_seq(
    txn: &DatabaseTransaction,
    node_id: &str,
    run: &str,
    kind: &str,
    next: i64,
    dropped: u64,
    exists: bool,
) -> Result<(), DbErr> {
    let row = telemetry_stream::ActiveModel {
        node_id: Set(node_id.to_owned()),
        run: Set(run.to_owned()),
        kind: Set(kind.to_owned()),
        next_seq: Set(next),
        dropped: Set(dropped as i64),
        updated_at: Set(Utc::now()),
    };
    if exists {
        telemetry_stream::Entity::update(row).exec(txn).await?;
    } else {
        telemetry_stream::Entity::insert(row).exec(txn).await?;
    }
    Ok(())
}

/// Deletes a job's log lines beyond the newest [`MAX_LOG_LINES_PER_JOB`] and counts them on the
/// job.
async fn bound_logs(txn: &DatabaseTransaction, node_id: &str, name: &str) -> Result<(), DbErr> {
    let of_job = || {
        job_log::Entity::find()
            .filter(job_log::Column::NodeId.eq(node_id))
            .filter(job_log::Column::Job.eq(name))
    };
    let count = of_job().count(txn).await?;
    if count <= MAX_LOG_LINES_PER_JOB {
        return Ok(());
    }
    // The id of the oldest line kept.
    let Some(oldest_kept) = of_job()
        .order_by_desc(job_log::Column::Id)
        .offset(MAX_LOG_LINES_PER_JOB - 1)
        .one(txn)
        .await?
    else {
        return Ok(());
    };
    let gone = job_log::Entity::delete_many()
        .filter(job_log::Column::NodeId.eq(node_id))
        .filter(job_log::Column::Job.eq(name))
        .filter(job_log::Column::Id.lt(oldest_kept.id))
        .exec(txn)
        .await?
        .rows_affected;
    job::Entity::update_many()
        .col_expr(
            job::Column::LogsDropped,
            Expr::col(job::Column::LogsDropped).add(gone as i64),
        )
        .filter(job::Column::NodeId.eq(node_id))
        .filter(job::Column::Name.eq(name))
        .exec(txn)
        .await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use trellis_proto::{LogLine, LogStream, ReadingBatch, Series};

    use super::*;
    use crate::telemetry::Telemetry;

    fn readings(run: &str, seq: u64, held: u64, values: &[f64]) -> Batch {
        Batch::Readings(
            "pi".into(),
            ReadingBatch {
                run: run.into(),
                seq,
                held,
                dropped: 0,
                series: vec![Series {
                    job: "od_reading".into(),
                    metric: "od".into(),
                    unit: None,
                }],
                points: values.iter().map(|v| (0, 1_000, *v)).collect(),
            },
        )
    }

    /// The telemetry service of `db` with its ingester running, its bridge to a broker that is
    /// not there (the stored marks are queued and go nowhere).
    fn running_ingester(db: DatabaseConnection) -> Telemetry {
        let (t, mut ingester) = Telemetry::new(db.clone());
        let bridge = crate::mqtt::bridge::Bridge::start(
            &trellis_proto::BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1,
                tls: false,
            },
            None,
            None,
            crate::mqtt::bridge::Domains {
                nodes: crate::nodes::Nodes::new(db.clone()),
                jobs: crate::jobs::Jobs::new(db),
                telemetry: t.clone(),
            },
            None,
            tokio_util::sync::CancellationToken::new(),
        );
        tokio::spawn(async move { ingester.run(bridge).await });
        t
    }

    #[tokio::test]
    async fn each_reading_is_stored_once_whatever_order_and_repeats_bring() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let db = crate::infra::db::connect(&url).await.unwrap();
        let t = running_ingester(db);
        let run = "0123456789abcdef";
        // 0-2; the same again (a QoS 1 redelivery); 2-4 (overlapping); 0-1 late; then after a
        // gap the agent made (it dropped 5-6 and holds from 7) 7-8; 11 past a gap lost on the way
        // (held from 9): not stored until 9-10 come again; and another run of the agent from 0.
        for b in [
            readings(run, 0, 0, &[0.0, 1.0, 2.0]),
            readings(run, 0, 0, &[0.0, 1.0, 2.0]),
            readings(run, 2, 0, &[2.0, 3.0, 4.0]),
            readings(run, 0, 0, &[0.0, 1.0]),
            readings(run, 7, 7, &[7.0, 8.0]),
            readings(run, 11, 9, &[11.0]),
            readings(run, 9, 9, &[9.0, 10.0]),
            readings(run, 11, 9, &[11.0]),
            readings("fedcba9876543210", 0, 0, &[100.0]),
        ] {
            t.submit(b).await;
        }
        // A log line with a NUL (Postgres would refuse it) among others.
        t.submit(Batch::Logs(
            "pi".into(),
            trellis_proto::LogBatch {
                run: run.into(),
                seq: 0,
                held: 0,
                dropped: 0,
                lines: vec![LogLine {
                    job: "x".into(),
                    at_ms: 1,
                    stream: LogStream::Stdout,
                    line: "a\0b".into(),
                }],
            },
        ))
        .await;
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let of = crate::telemetry::service::Selection {
                    node_id: Some("pi"),
                    ..Default::default()
                };
                let rows = t.readings(&of, None, 100).await.unwrap();
                let logs = t.logs("pi", "x", 10).await.unwrap();
                if rows.len() >= 11 && !logs.is_empty() {
                    return (rows, logs);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("stored");
        let mut values: Vec<f64> = got.0.iter().map(|r| r.value).collect();
        values.sort_by(f64::total_cmp);
        assert_eq!(
            values,
            [0.0, 1.0, 2.0, 3.0, 4.0, 7.0, 8.0, 9.0, 10.0, 11.0, 100.0]
        );
        assert_eq!(got.1[0].line, "a\u{FFFD}b");
        assert_eq!(t.queue_depth(), 0);
    }

    /// Live subscribers get each reading stored, once, with the row stored, whether it went
    /// before its commit (its stream known from an earlier one) or after it (the first of a
    /// run); redeliveries, overlaps, late repeats and batches past a gap included.
    #[tokio::test]
    async fn live_subscribers_get_the_rows_stored_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let db = crate::infra::db::connect(&url).await.unwrap();
        let t = running_ingester(db);
        let mut live = t.subscribe_readings();
        let run = "0123456789abcdef";
        let of = crate::telemetry::service::Selection {
            node_id: Some("pi"),
            ..Default::default()
        };
        let mut shown: Vec<reading::Model> = Vec::new();
        // One batch at a time, each after the one before is stored: every one after the first
        // of its run goes live before its commit.
        for (b, stored_after) in [
            (readings(run, 0, 0, &[0.0, 1.0, 2.0]), 3),
            (readings(run, 0, 0, &[0.0, 1.0, 2.0]), 3),
            (readings(run, 2, 0, &[2.0, 3.0, 4.0]), 5),
            (readings(run, 0, 0, &[0.0, 1.0]), 5),
            (readings(run, 7, 7, &[7.0, 8.0]), 7),
            (readings(run, 11, 9, &[11.0]), 7),
            (readings(run, 9, 9, &[9.0, 10.0]), 9),
            (readings(run, 11, 9, &[11.0]), 10),
            (readings(run, 12, 9, &[12.0, 13.0]), 12),
            (readings("fedcba9876543210", 0, 0, &[100.0]), 13),
            (readings("fedcba9876543210", 1, 0, &[101.0]), 14),
        ] {
            t.submit(b).await;
            tokio::time::timeout(Duration::from_secs(10), async {
                while t.readings(&of, None, 100).await.unwrap().len() < stored_after {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("stored");
        }
        // Whatever went live after its commit is in the feed by the time the store is read back.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(Some(rows)) = live.try_recv() {
            shown.extend(rows.iter().cloned());
        }
        let stored = t.readings(&of, None, 100).await.unwrap();
        let key = |r: &reading::Model| {
            (
                r.value.to_bits(),
                r.time_ms,
                r.node_time_ms,
                r.experiment_id.clone(),
                r.job.clone(),
                r.metric.clone(),
            )
        };
        let mut shown: Vec<_> = shown.iter().map(key).collect();
        let mut stored: Vec<_> = stored.iter().map(key).collect();
        shown.sort();
        stored.sort();
        assert_eq!(stored.len(), 14);
        assert_eq!(
            shown, stored,
            "live readings are the rows stored, once each"
        );
    }

    /// What the ingester knows from a commit makes the next batches' rows at once, as the store
    /// will; what it does not know (a new run, a change of experiments' nodes, node times older
    /// than its spans) waits for the commit.
    #[test]
    fn known_streams_make_rows_before_their_commit() {
        let run = "0123456789abcdef";
        let mut known = Known::default();
        let outcome = Outcome {
            next: vec![(("pi".into(), run.into()), 3)],
            offsets: vec![("pi".into(), 250)],
            since: 1_000 - DAY_MS,
            ..Default::default()
        };
        known.learn(&outcome, 7);
        let group = [
            readings(run, 2, 0, &[2.0, 3.0]),
            readings(run, 2, 0, &[2.0, 3.0, 4.0]),
            readings(run, 9, 0, &[9.0]),
            readings("fedcba9876543210", 0, 0, &[1.0]),
        ];
        let (rows, sent) = known.rows(&group, 7);
        assert_eq!(sent, [true, true, false, false]);
        let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
        assert_eq!(
            values,
            [3.0, 4.0],
            "each once, from the stream's next number"
        );
        assert_eq!((rows[0].node_time_ms, rows[0].time_ms), (1_000, 750));
        // An experiment's nodes changed since: nothing until a commit has loaded them again.
        let (rows, sent) = known.rows(&group, 8);
        assert!(rows.is_empty() && sent.iter().all(|s| !s));
        known.learn(&outcome, 8);
        assert_eq!(known.rows(&group, 8).1, [true, true, false, false]);
        // Node times from before the spans loaded.
        let Batch::Readings(n, mut old) = readings(run, 3, 0, &[5.0]) else {
            unreachable!()
        };
        old.points[0].1 = 1_000 - DAY_MS - 1;
        assert_eq!(known.rows(&[Batch::Readings(n, old)], 8).1, [false]);
        // An offset read too long ago (the node's clock may have been set since).
        let read = known.offsets["pi"].1;
        known.offsets.get_mut("pi").unwrap().1 = read - OFFSET_TRUSTED;
        assert!(known.rows(&group, 8).0.is_empty());
        // A node's agent that started again: its new run replaces the old one.
        known.learn(
            &Outcome {
                next: vec![(("pi".into(), "fedcba9876543210".into()), 1)],
                offsets: vec![("pi".into(), 250)],
                since: 1_000 - DAY_MS,
                ..Default::default()
            },
            8,
        );
        assert_eq!(known.next.len(), 1);
        assert_eq!(known.rows(&group, 8).1, [false, false, false, true]);
    }

    /// Experiment E, with node pi in it from `from_ms` (until `until_ms`).
    async fn pi_in_experiment_e(db: &DatabaseConnection, from_ms: i64, until_ms: Option<i64>) {
        use entity::{experiment, experiment_node};
        use sea_orm::ActiveModelTrait;
        experiment::ActiveModel {
            id: Set("E".into()),
            name: Set("e".into()),
            description: Set(String::new()),
            created_by: Set("t".into()),
            created_ms: Set(0),
            ended_ms: Set(None),
            ended_by: Set(None),
        }
        .insert(db)
        .await
        .unwrap();
        experiment_node::ActiveModel {
            experiment_id: Set("E".into()),
            node_id: Set("pi".into()),
            from_ms: Set(from_ms),
            until_ms: Set(until_ms),
            added_by: Set("t".into()),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }

    /// Readings sent before their commit are stored as they were sent: with the offset and the
    /// spans they were made with, each once, whatever the group's order; a stream one of whose
    /// batches waits for the commit has its later batches wait too.
    #[tokio::test]
    async fn readings_sent_before_their_commit_are_stored_as_sent() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let db = crate::infra::db::connect(&url).await.unwrap();
        // pi is in E from node time 1250 on (1000 once corrected by the offset below).
        pi_in_experiment_e(&db, 1_000, None).await;
        let (t, mut ingester) = Telemetry::new(db.clone());
        let _subscriber = t.subscribe_readings();
        let run = "r";
        let batch = |seq: u64, times: &[i64]| {
            let Batch::Readings(n, mut b) = readings(run, seq, 0, &[]) else {
                unreachable!()
            };
            b.points = times.iter().map(|&t| (0, t, t as f64)).collect();
            Batch::Readings(n, b)
        };
        ingester
            .store(&[batch(0, &[1_100, 1_200, 1_300])], &[false])
            .await
            .unwrap();
        // What a commit left: the stream at 3, an offset of 250 (the database has none: 0), spans.
        let since = 1_100 - DAY_MS;
        let outcome = Outcome {
            next: vec![(("pi".into(), run.into()), 3)],
            offsets: vec![("pi".into(), 250)],
            membership: Membership::load(&db, ["pi"], since).await.unwrap(),
            since,
            ..Default::default()
        };
        ingester
            .known
            .learn(&outcome, crate::experiments::membership_changes());
        let group = [
            batch(3, &[1_400, 1_500]),
            batch(3, &[1_400, 1_500, 1_600]),
            // From before the spans loaded: it waits, and so does the next of its stream.
            batch(6, &[-DAY_MS, 1_700]),
            batch(6, &[1_650, 1_700, 1_800]),
        ];
        let (shown, sent) = ingester
            .known
            .rows(&group, crate::experiments::membership_changes());
        assert_eq!(sent, [true, true, false, false]);
        let outcome = ingester.store(&group, &sent).await.unwrap();
        let key = |r: &reading::Model| {
            (
                r.node_time_ms,
                r.time_ms,
                r.value.to_bits(),
                r.experiment_id.clone(),
            )
        };
        let mut shown: Vec<_> = shown
            .iter()
            .chain(&outcome.readings)
            .filter(|r| r.node_time_ms >= 1_400)
            .map(key)
            .collect();
        shown.sort();
        let stored: Vec<_> = reading::Entity::find()
            .filter(reading::Column::NodeTimeMs.gte(1_400))
            .all(&db)
            .await
            .unwrap()
            .iter()
            .map(key)
            .collect();
        let mut stored = stored;
        stored.sort();
        assert_eq!(shown, stored);
        let expected = |t: i64, corrected: i64, e: Option<&str>| {
            (t, corrected, (t as f64).to_bits(), e.map(str::to_owned))
        };
        assert_eq!(
            &stored[..3],
            [
                expected(1_400, 1_150, Some("E")),
                expected(1_500, 1_250, Some("E")),
                expected(1_600, 1_350, Some("E")),
            ],
            "made with the offset they were sent with"
        );
        // The waiting ones went after the commit, made from the database (offset 0).
        assert!(outcome.readings.iter().all(|r| r.time_ms == r.node_time_ms));
        assert_eq!(outcome.readings.len(), 3);
    }

    const OD: crate::telemetry::service::SeriesKey<'static> =
        crate::telemetry::service::SeriesKey {
            node_id: "pi",
            job: "od_reading",
            metric: "od",
            experiment_id: None,
        };

    async fn series_on(db: DatabaseConnection) {
        let (t, ingester) = Telemetry::new(db.clone());
        let bridge = crate::mqtt::bridge::Bridge::start(
            &trellis_proto::BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1,
                tls: false,
            },
            None,
            None,
            crate::mqtt::bridge::Domains {
                nodes: crate::nodes::Nodes::new(db.clone()),
                jobs: crate::jobs::Jobs::new(db),
                telemetry: t.clone(),
            },
            None,
            tokio_util::sync::CancellationToken::new(),
        );
        tokio::spawn(async move {
            let mut ingester = ingester;
            ingester.run(bridge).await;
        });
        // A reading every second for 1000 s: value = the second.
        let run = "00000000000000aa";
        for chunk in 0..2u64 {
            let points = (0..500).map(|i| {
                let s = chunk * 500 + i;
                (0, 1_000_000 + s as i64 * 1000, s as f64)
            });
            t.submit(Batch::Readings(
                "pi".into(),
                ReadingBatch {
                    run: run.into(),
                    seq: chunk * 500,
                    held: chunk * 500,
                    dropped: 0,
                    series: vec![Series {
                        job: "od_reading".into(),
                        metric: "od".into(),
                        unit: None,
                    }],
                    points: points.collect(),
                },
            ))
            .await;
        }
        let range = (1_000_000, 1_000_000 + 1_000_000);
        let buckets = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let b = t.series(&OD, range, 10).await.unwrap();
                if b.iter().map(|b| b.count).sum::<i64>() == 1000 {
                    return b;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("stored");
        // Ten buckets of 100 s would be 1 min 40 s each: over a minute, buckets are whole minutes
        // on a grid aligned to the minute (from the rollups), so nine of 2 min from 0:16:00;
        // the first holds seconds 0-79 (0:16:40 to 0:17:59).
        assert_eq!(buckets.len(), 9);
        let first = &buckets[0];
        assert_eq!(
            (
                first.start_ms,
                first.width_ms,
                first.count,
                first.min,
                first.max
            ),
            (960_000, 120_000, 80, 0.0, 79.0)
        );
        assert!((first.avg - 39.5).abs() < 1e-9, "{}", first.avg);
        assert_eq!((buckets[8].min, buckets[8].max), (920.0, 999.0));
        // A narrower window, more points than readings: one bucket a reading, none empty.
        let b = t.series(&OD, (1_000_000, 1_010_000), 1000).await.unwrap();
        assert_eq!(b.len(), 10);
        assert!(b.iter().all(|b| b.count == 1 && b.min == b.max));
        // Bad requests are named.
        let e = t.series(&OD, range, 0).await.unwrap_err();
        assert!(
            e.public_message()
                .contains("points 0 must be between 1 and 10000"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn readings_carry_the_experiment_their_node_was_in_at_their_time_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        tagging_on(crate::infra::db::connect(&url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn readings_carry_the_experiment_their_node_was_in_at_their_time_on_postgres() {
        with_postgres("tagging", tagging_on).await;
    }

    async fn tagging_on(db: DatabaseConnection) {
        use entity::reading_series;
        // pi was in E from 1000 to 2000.
        pi_in_experiment_e(&db, 1_000, Some(2_000)).await;
        let (_t, ingester) = Telemetry::new(db.clone());
        let batch = |seq: u64, times: &[i64]| {
            let Batch::Readings(n, mut b) = readings("r", seq, 0, &[]) else {
                unreachable!()
            };
            b.points = times.iter().map(|&t| (0, t, t as f64)).collect();
            Batch::Readings(n, b)
        };
        // Sent late (an outage buffer) or not, a reading goes by its own time.
        ingester
            .store(&[batch(0, &[500, 1_500, 2_500])], &[false])
            .await
            .unwrap();
        ingester
            .store(&[batch(3, &[1_999, 2_000])], &[false])
            .await
            .unwrap();
        let rows = reading::Entity::find()
            .order_by_asc(reading::Column::TimeMs)
            .all(&db)
            .await
            .unwrap();
        let tags: Vec<(i64, Option<&str>)> = rows
            .iter()
            .map(|r| (r.time_ms, r.experiment_id.as_deref()))
            .collect();
        assert_eq!(
            tags,
            [
                (500, None),
                (1_500, Some("E")),
                (1_999, Some("E")),
                (2_000, None),
                (2_500, None)
            ]
        );
        // The catalog counts each series once per experiment, its span from both batches.
        let catalog: Vec<(String, i64, i64, i64)> = reading_series::Entity::find()
            .order_by_asc(reading_series::Column::ExperimentId)
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.experiment_id, s.first_ms, s.last_ms, s.count))
            .collect();
        assert_eq!(
            catalog,
            [
                (String::new(), 500, 2_500, 3),
                ("E".to_owned(), 1_500, 1_999, 2)
            ]
        );
    }

    /// 20 000 readings at irregular times over about three hours (and another series beside
    /// them), stored in batches as agents send them; then series over many ranges and widths
    /// (from the rollups with the partial minutes at the ends, and from the readings) are
    /// checked against the same figures computed here from the readings themselves.
    async fn series_agree_on(db: DatabaseConnection) {
        let (t, ingester) = Telemetry::new(db.clone());
        let bridge = crate::mqtt::bridge::Bridge::start(
            &trellis_proto::BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1,
                tls: false,
            },
            None,
            None,
            crate::mqtt::bridge::Domains {
                nodes: crate::nodes::Nodes::new(db.clone()),
                jobs: crate::jobs::Jobs::new(db),
                telemetry: t.clone(),
            },
            None,
            tokio_util::sync::CancellationToken::new(),
        );
        tokio::spawn(async move {
            let mut ingester = ingester;
            ingester.run(bridge).await;
        });
        // A small linear congruential generator: the same "random" data every run.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        let t0 = 1_700_000_012_345i64;
        let mut time = t0;
        let mut all: Vec<(i64, f64)> = Vec::new();
        let run = "00000000000000bb";
        for chunk in 0..40u64 {
            let mut points = Vec::new();
            for _ in 0..500 {
                time += (next() % 1100) as i64;
                let value = (next() % 10_000) as f64 / 100.0 - 50.0;
                all.push((time, value));
                points.push((0, time, value));
                // Another series: never in this one's figures.
                points.push((1, time, 1e6));
            }
            t.submit(Batch::Readings(
                "pi".into(),
                ReadingBatch {
                    run: run.into(),
                    seq: chunk * 1000,
                    held: chunk * 1000,
                    dropped: 0,
                    series: vec![
                        Series {
                            job: "od_reading".into(),
                            metric: "od".into(),
                            unit: None,
                        },
                        Series {
                            job: "od_reading".into(),
                            metric: "other".into(),
                            unit: None,
                        },
                    ],
                    points,
                },
            ))
            .await;
        }
        let end = time + 1;
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let b = t.series(&OD, (t0, end), 1).await.unwrap();
                if b.iter().map(|b| b.count).sum::<i64>() == 20_000 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("stored");
        let minute = (t0 / 60_000 + 3) * 60_000;
        let ranges = [
            (t0, end, 1),
            (t0, end, 7),
            (t0, end, 100),
            (t0, end, 1000),
            (t0, end, 10_000),
            (t0 + 123_456, t0 + 7_000_000, 50),
            (minute, minute + 3_600_000, 60),
            (minute + 1, minute + 3_600_000 - 1, 59),
            (minute + 10_000, minute + 50_000, 1),
            (t0 - 86_400_000, end + 86_400_000, 500),
        ];
        for (from, to, points) in ranges {
            let got = t.series(&OD, (from, to), points).await.unwrap();
            let what = format!("{from}..{to} in {points}");
            assert!(got.len() as i64 <= points, "{what}: {} buckets", got.len());
            let in_range: Vec<&(i64, f64)> = all
                .iter()
                .filter(|(at, _)| (from..to).contains(at))
                .collect();
            assert_eq!(
                got.iter().map(|b| b.count).sum::<i64>(),
                in_range.len() as i64,
                "{what}: every reading in one bucket"
            );
            for b in &got {
                let inside: Vec<f64> = in_range
                    .iter()
                    .filter(|(at, _)| (b.start_ms..b.start_ms + b.width_ms).contains(at))
                    .map(|(_, v)| *v)
                    .collect();
                assert!(!inside.is_empty(), "{what}: empty bucket {b:?}");
                let min = inside.iter().copied().fold(f64::INFINITY, f64::min);
                let max = inside.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let avg = inside.iter().sum::<f64>() / inside.len() as f64;
                assert_eq!(
                    (b.count, b.min, b.max),
                    (inside.len() as i64, min, max),
                    "{what}: {b:?}"
                );
                assert!((b.avg - avg).abs() < 1e-9, "{what}: {b:?} avg {avg}");
                assert!(
                    b.start_ms + b.width_ms > from && b.start_ms < to,
                    "{what}: {b:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn downsampled_series_agree_with_a_direct_computation_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        series_agree_on(crate::infra::db::connect(&url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn downsampled_series_agree_with_a_direct_computation_on_postgres() {
        with_postgres("series_agree", series_agree_on).await;
    }

    #[tokio::test]
    async fn a_series_is_downsampled_into_buckets_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        series_on(crate::infra::db::connect(&url).await.unwrap()).await;
    }

    /// The same on Postgres when the test command started one (it always does).
    #[tokio::test]
    async fn a_series_is_downsampled_into_buckets_on_postgres() {
        with_postgres("series", series_on).await;
    }

    /// Runs `check` on a fresh Postgres database when the test command started Postgres (it
    /// always does), and drops the database afterwards.
    pub(crate) async fn with_postgres<F, Fut>(what: &str, check: F)
    where
        F: FnOnce(DatabaseConnection) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        use sea_orm::ConnectionTrait;
        let Ok(admin) = std::env::var("TRELLIS_TEST_POSTGRES_URL") else {
            eprintln!("TRELLIS_TEST_POSTGRES_URL is not set: skipped (scripts/test.sh sets it)");
            return;
        };
        let name = format!("trellis_unit_{what}_{}", uuid::Uuid::new_v4().simple());
        let admin_db = crate::infra::db::open(&admin).await.unwrap();
        admin_db
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("{admin} names no database"),
        };
        check(crate::infra::db::connect(&url).await.unwrap()).await;
        let _ = admin_db
            .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await;
    }
}
