//! The ingester: the background loop that stores the readings and log lines agents send. It owns
//! the receiving end of the telemetry queue; the database holds everything else (how far each
//! agent run's numbered stream is stored, in `telemetry_stream`), so it can be stopped at any point
//! and started again: a batch that did commit is skipped by its numbers when it comes again.
//! Not yet covered: the bridge acknowledges a batch to the broker when it receives it, so the
//! batches waiting in the queue when the leader is killed are lost (at most
//! [`INGEST_QUEUE`](super::service::INGEST_QUEUE) batches); acknowledging after the commit is the telemetry issue's work.
//!
//! Each turn takes every batch waiting (up to [`BATCHES_PER_TRANSACTION`]) and stores them in one
//! transaction: per batch, it reads its stream's next expected number, skips what is below it (a
//! QoS 1 batch delivered twice), inserts the rest with one multi-row insert, and moves the number
//! on. Log lines beyond [`MAX_LOG_LINES_PER_JOB`] per job are deleted oldest first, and counted on
//! the job. Times are corrected by the node's measured clock offset (both are kept).
//!
//! When the database fails, the same batches are tried again (after a pause that doubles up to
//! 5 s) until they are stored: the queue fills meanwhile and the bridge waits, which holds the
//! agents back through MQTT flow control; their outage buffers keep the rest.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use entity::{job, job_log, node, reading, telemetry_stream};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use tokio::sync::{broadcast, mpsc};

use super::service::{Batch, LogEvent};

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
    depth: Arc<AtomicUsize>,
}

impl Ingester {
    pub(super) fn new(
        db: DatabaseConnection,
        rx: mpsc::Receiver<Batch>,
        logs: broadcast::Sender<LogEvent>,
        depth: Arc<AtomicUsize>,
    ) -> Self {
        Ingester {
            db,
            rx,
            logs,
            depth,
        }
    }

    /// Stores batches until the queue closes (the leader is shutting down).
    pub async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut group = vec![first];
            while group.len() < BATCHES_PER_TRANSACTION {
                match self.rx.try_recv() {
                    Ok(b) => group.push(b),
                    Err(_) => break,
                }
            }
            let mut pause = Duration::from_millis(100);
            let lines = loop {
                match self.store(&group).await {
                    Ok(lines) => break lines,
                    Err(e) => {
                        tracing::error!(error = %e, batches = group.len(), retry_in_ms = pause.as_millis() as u64, "could not store telemetry; trying again");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            };
            self.depth.fetch_sub(group.len(), Ordering::Relaxed);
            for line in lines {
                // No subscriber is not an error.
                let _ = self.logs.send(LogEvent { line: Some(line) });
            }
        }
    }

    /// Stores a group of batches in one transaction; returns the log lines stored.
    async fn store(&self, group: &[Batch]) -> Result<Vec<job_log::Model>, DbErr> {
        let txn = self.db.begin().await?;
        let mut offsets: HashMap<String, i64> = HashMap::new();
        let mut stored_lines = Vec::new();
        let mut jobs_with_logs = BTreeSet::new();
        for batch in group {
            let (node_id, kind, run, seq, dropped, len) = match batch {
                Batch::Readings(n, b) => (n, READINGS, &b.run, b.seq, b.dropped, b.points.len()),
                Batch::Logs(n, b) => (n, LOGS, &b.run, b.seq, b.dropped, b.lines.len()),
            };
            let next = next_seq(&txn, node_id, run, kind).await?;
            let skip = usize::try_from(next.unwrap_or(0).saturating_sub(seq as i64)).unwrap_or(0);
            if skip >= len && next.is_some() {
                continue;
            }
            let offset = match offsets.get(node_id) {
                Some(o) => *o,
                None => {
                    let o = node::Entity::find_by_id(node_id.as_str())
                        .one(&txn)
                        .await?
                        .and_then(|n| n.clock_offset_ms)
                        .unwrap_or(0);
                    offsets.insert(node_id.clone(), o);
                    o
                }
            };
            match batch {
                Batch::Readings(_, b) => {
                    let rows: Vec<reading::ActiveModel> = b
                        .points
                        .iter()
                        .skip(skip)
                        .map(|&(i, at, value)| {
                            let s = &b.series[i as usize];
                            reading::ActiveModel {
                                node_id: Set(node_id.clone()),
                                job: Set(s.job.clone()),
                                metric: Set(s.metric.clone()),
                                unit: Set(s.unit.clone()),
                                time_ms: Set(at.saturating_sub(offset)),
                                node_time_ms: Set(at),
                                value: Set(value),
                                ..Default::default()
                            }
                        })
                        .collect();
                    if !rows.is_empty() {
                        reading::Entity::insert_many(rows).exec(&txn).await?;
                    }
                }
                Batch::Logs(_, b) => {
                    for l in b.lines.iter().skip(skip) {
                        let row = job_log::ActiveModel {
                            node_id: Set(node_id.clone()),
                            job: Set(l.job.clone()),
                            time_ms: Set(l.at_ms.saturating_sub(offset)),
                            stream: Set(l.stream.as_str().to_owned()),
                            line: Set(l.line.clone()),
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
            save_seq(
                &txn,
                node_id,
                run,
                kind,
                seq + len as u64,
                dropped,
                next.is_some(),
            )
            .await?;
        }
        for (node_id, name) in jobs_with_logs {
            bound_logs(&txn, &node_id, &name).await?;
        }
        txn.commit().await?;
        Ok(stored_lines)
    }
}

async fn next_seq(
    txn: &DatabaseTransaction,
    node_id: &str,
    run: &str,
    kind: &str,
) -> Result<Option<i64>, DbErr> {
    Ok(
        telemetry_stream::Entity::find_by_id((node_id.to_owned(), run.to_owned(), kind.to_owned()))
            .one(txn)
            .await?
            .map(|s| s.next_seq),
    )
}

async fn save_seq(
    txn: &DatabaseTransaction,
    node_id: &str,
    run: &str,
    kind: &str,
    next: u64,
    dropped: u64,
    exists: bool,
) -> Result<(), DbErr> {
    let row = telemetry_stream::ActiveModel {
        node_id: Set(node_id.to_owned()),
        run: Set(run.to_owned()),
        kind: Set(kind.to_owned()),
        next_seq: Set(next as i64),
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
