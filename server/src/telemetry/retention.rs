//! Retention: readings older than their metric's rule (or the rule for every metric) are deleted
//! in the background, a small batch at a time, so ingestion never waits long behind a delete.
//!
//! The loop owns nothing but its timer: the rules (`retention_rule`) and what is stored
//! (`reading_series`, the catalog the ingester keeps) are in the database, so it can be stopped
//! at any point and started again. Each pass walks the catalog: a series whose first reading is
//! older than its cutoff (a minute's start) has its oldest readings deleted, about
//! [`DELETE_BATCH`] at a time in whole minutes, each batch in one transaction with those minutes'
//! rollups and the catalog row's count and first time, then a pause ([`BATCH_PAUSE`]).
//! A series left empty leaves the catalog. No rule, no deletion: by default everything is kept.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use entity::{job_log, reading, reading_minute, reading_series, retention_rule};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use tokio_util::sync::CancellationToken;

use super::ingest::MINUTE_MS;
use crate::error::{ApiError, ApiResult};

/// How often a pass runs.
pub const PASS_EVERY: Duration = Duration::from_secs(60);
/// Readings deleted per transaction.
pub const DELETE_BATCH: u64 = 5_000;
/// Pause between two batches, so the ingester's transactions go in between.
pub const BATCH_PAUSE: Duration = Duration::from_millis(20);
/// Longest rule, days (a hundred years).
pub const MAX_DAYS: i32 = 36_500;

const DAY_MS: i64 = 86_400_000;

/// `q` narrowed to the readings of catalog row `s` (no experiment: `experiment_id` NULL).
fn readings_of<Q: QueryFilter>(q: Q, s: &reading_series::Model) -> Q {
    let q = q
        .filter(reading::Column::NodeId.eq(s.node_id.as_str()))
        .filter(reading::Column::Job.eq(s.job.as_str()))
        .filter(reading::Column::Metric.eq(s.metric.as_str()));
    if s.experiment_id.is_empty() {
        q.filter(reading::Column::ExperimentId.is_null())
    } else {
        q.filter(reading::Column::ExperimentId.eq(s.experiment_id.as_str()))
    }
}

/// `q` narrowed to catalog row `s` itself.
fn catalog_row<Q: QueryFilter>(q: Q, s: &reading_series::Model) -> Q {
    q.filter(reading_series::Column::NodeId.eq(s.node_id.as_str()))
        .filter(reading_series::Column::Job.eq(s.job.as_str()))
        .filter(reading_series::Column::Metric.eq(s.metric.as_str()))
        .filter(reading_series::Column::ExperimentId.eq(s.experiment_id.as_str()))
}

/// The start of the minute holding `ms`.
fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// What a pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Readings deleted.
    pub readings: u64,
    /// Series left empty (gone from the catalog).
    pub series_emptied: u64,
}

/// How much the database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    /// The database's size on disk, bytes (SQLite's file without its WAL; Postgres's database).
    pub database_bytes: i64,
    /// Readings stored (from the catalog: no scan).
    pub readings: i64,
    /// Series stored.
    pub series: i64,
    /// Job log lines stored.
    pub log_lines: i64,
}

/// The retention service and its loop; cheap to clone.
#[derive(Clone)]
pub struct Retention {
    db: DatabaseConnection,
}

impl Retention {
    /// A service over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Retention { db }
    }

    /// Every rule, the one for every metric (`""`) first.
    pub async fn rules(&self) -> ApiResult<Vec<retention_rule::Model>> {
        Ok(retention_rule::Entity::find()
            .order_by_asc(retention_rule::Column::Metric)
            .all(&self.db)
            .await?)
    }

    /// Sets the rule of `metric` (of every metric without one of its own when `None`) to keep
    /// `days` days of readings, or removes it (`days` `None`: keep everything, or follow the rule
    /// for every metric). Returns every rule.
    pub async fn set_rule(
        &self,
        metric: Option<&str>,
        days: Option<i32>,
        actor: &str,
    ) -> ApiResult<Vec<retention_rule::Model>> {
        let metric = metric.map(str::trim).unwrap_or_default();
        if metric.chars().count() > 200 || metric.contains('\0') {
            return Err(ApiError::BadRequest(
                "a metric name has at most 200 characters and no NUL".into(),
            ));
        }
        match days {
            None => {
                retention_rule::Entity::delete_by_id(metric)
                    .exec(&self.db)
                    .await?;
            }
            Some(d) if !(1..=MAX_DAYS).contains(&d) => {
                return Err(ApiError::BadRequest(format!(
                    "days {d} must be between 1 and {MAX_DAYS} (remove the rule to keep everything)"
                )));
            }
            Some(d) => {
                let row = retention_rule::ActiveModel {
                    metric: Set(metric.to_owned()),
                    days: Set(d),
                    updated_by: Set(actor.to_owned()),
                    updated_ms: Set(Utc::now().timestamp_millis()),
                };
                match retention_rule::Entity::find_by_id(metric)
                    .one(&self.db)
                    .await?
                {
                    Some(_) => row.update(&self.db).await?,
                    None => row.insert(&self.db).await?,
                };
            }
        }
        self.rules().await
    }

    /// Runs passes every [`PASS_EVERY`] until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(PASS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.pass(Utc::now().timestamp_millis()).await {
                Ok(s) if s.readings > 0 => tracing::info!(
                    readings = s.readings,
                    series_emptied = s.series_emptied,
                    "retention deleted old readings"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = e.log_message(), "retention pass failed"),
            }
        }
    }

    /// One pass at time `now_ms`: deletes what the rules say is too old.
    pub async fn pass(&self, now_ms: i64) -> ApiResult<Swept> {
        let rules: HashMap<String, i32> = self
            .rules()
            .await?
            .into_iter()
            .map(|r| (r.metric, r.days))
            .collect();
        let mut swept = Swept::default();
        if rules.is_empty() {
            return Ok(swept);
        }
        let every = rules.get("").copied();
        let catalog = reading_series::Entity::find().all(&self.db).await?;
        for s in catalog {
            let Some(days) = rules.get(&s.metric).copied().or(every) else {
                continue;
            };
            // Whole minutes, as the rollups keep them.
            let cutoff = minute_of(now_ms.saturating_sub(i64::from(days) * DAY_MS));
            if s.first_ms >= cutoff {
                continue;
            }
            loop {
                let (deleted, emptied, done) = self.delete_batch(&s, cutoff).await?;
                swept.readings += deleted;
                if emptied {
                    swept.series_emptied += 1;
                }
                if done || emptied {
                    break;
                }
                tokio::time::sleep(BATCH_PAUSE).await;
            }
        }
        Ok(swept)
    }

    /// Deletes about [`DELETE_BATCH`] of the series' oldest readings older than `cutoff` (a
    /// minute's start), whole minutes at a time with their rollups, and moves its catalog row
    /// along, in one transaction; returns how many went, whether the series is empty now, and
    /// whether nothing older than `cutoff` is left.
    async fn delete_batch(
        &self,
        s: &reading_series::Model,
        cutoff: i64,
    ) -> ApiResult<(u64, bool, bool)> {
        let txn = self.db.begin().await?;
        // A write first: it takes SQLite's write lock (a read first would pin a snapshot that
        // an ingester commit makes stale, and the delete would then fail as "locked" at once)
        // and Postgres's lock on the series' catalog row, in the ingester's own order (catalog,
        // then rollups), so the two take turns on this series instead of racing.
        catalog_row(
            reading_series::Entity::update_many().col_expr(
                reading_series::Column::Count,
                Expr::col(reading_series::Column::Count),
            ),
            s,
        )
        .exec(&txn)
        .await?;
        // Up to the minute of the batch's last reading (the minute holding the oldest at least,
        // however many it holds), so a minute's readings and its rollup go together.
        let oldest: Option<i64> = readings_of(reading::Entity::find(), s)
            .select_only()
            .column(reading::Column::TimeMs)
            .order_by_asc(reading::Column::TimeMs)
            .into_tuple()
            .one(&txn)
            .await?;
        let beyond: Option<i64> = readings_of(reading::Entity::find(), s)
            .select_only()
            .column(reading::Column::TimeMs)
            .filter(reading::Column::TimeMs.lt(cutoff))
            .order_by_asc(reading::Column::TimeMs)
            .offset(DELETE_BATCH)
            .into_tuple()
            .one(&txn)
            .await?;
        let bound = match (beyond, oldest) {
            (Some(t), Some(oldest)) => Ord::min(
                Ord::max(minute_of(t), minute_of(oldest) + MINUTE_MS),
                cutoff,
            ),
            _ => cutoff,
        };
        let deleted = readings_of(reading::Entity::delete_many(), s)
            .filter(reading::Column::TimeMs.lt(bound))
            .exec(&txn)
            .await?
            .rows_affected;
        reading_minute::Entity::delete_many()
            .filter(reading_minute::Column::NodeId.eq(s.node_id.as_str()))
            .filter(reading_minute::Column::Job.eq(s.job.as_str()))
            .filter(reading_minute::Column::Metric.eq(s.metric.as_str()))
            .filter(reading_minute::Column::ExperimentId.eq(s.experiment_id.as_str()))
            .filter(reading_minute::Column::MinuteMs.lt(bound))
            .exec(&txn)
            .await?;
        let first: Option<i64> = readings_of(reading::Entity::find(), s)
            .select_only()
            .column(reading::Column::TimeMs)
            .order_by_asc(reading::Column::TimeMs)
            .into_tuple()
            .one(&txn)
            .await?;
        // The count moves by what this batch deleted, relative to the row as it is when the write
        // happens (the ingester may have added to it meanwhile); the row goes only when that
        // leaves nothing, so readings stored meanwhile keep their row.
        let mut update = reading_series::Entity::update_many().col_expr(
            reading_series::Column::Count,
            Expr::col(reading_series::Column::Count).sub(deleted as i64),
        );
        if let Some(first) = first {
            update = update.col_expr(reading_series::Column::FirstMs, Expr::value(first));
        }
        catalog_row(update, s).exec(&txn).await?;
        let emptied = first.is_none()
            && catalog_row(reading_series::Entity::delete_many(), s)
                .filter(reading_series::Column::Count.lte(0))
                .exec(&txn)
                .await?
                .rows_affected
                > 0;
        txn.commit().await?;
        Ok((deleted, emptied, bound >= cutoff))
    }

    /// How much the database holds.
    pub async fn storage(&self) -> ApiResult<Storage> {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            sea_orm::DatabaseBackend::Postgres => {
                "SELECT pg_database_size(current_database())::BIGINT AS bytes"
            }
            _ => {
                "SELECT page_count * page_size AS bytes FROM pragma_page_count(), pragma_page_size()"
            }
        };
        let bytes: i64 = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(backend, sql))
            .await?
            .map(|r| r.try_get("", "bytes"))
            .transpose()?
            .unwrap_or(0);
        let readings: Option<i64> = reading_series::Entity::find()
            .select_only()
            // SUM of a BIGINT is NUMERIC on Postgres: cast back, on both.
            .column_as(Expr::cust("CAST(SUM(count) AS BIGINT)"), "sum")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?
            .flatten();
        let series = reading_series::Entity::find().count(&self.db).await?;
        let log_lines = job_log::Entity::find().count(&self.db).await?;
        Ok(Storage {
            database_bytes: bytes,
            readings: readings.unwrap_or(0),
            series: series as i64,
            log_lines: log_lines as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use trellis_proto::{ReadingBatch, Series};

    use super::*;
    use crate::telemetry::{Telemetry, service::Batch};

    const NOW: i64 = 1_800_000_000_000;

    /// Stores readings of `metric` at `times` through the ingester (so the catalog is kept).
    async fn store(db: &DatabaseConnection, metric: &str, run: &str, times: &[i64]) {
        let (_t, ingester) = Telemetry::new(db.clone());
        for (i, chunk) in times.chunks(500).enumerate() {
            let batch = Batch::Readings(
                "pi".into(),
                ReadingBatch {
                    run: run.into(),
                    seq: (i * 500) as u64,
                    held: 0,
                    dropped: 0,
                    series: vec![Series {
                        job: "j".into(),
                        metric: metric.into(),
                        unit: None,
                    }],
                    points: chunk.iter().map(|&t| (0, t, 1.0)).collect(),
                },
            );
            ingester.store_for_test(&[batch]).await;
        }
    }

    async fn catalog(db: &DatabaseConnection) -> Vec<(String, i64, i64)> {
        reading_series::Entity::find()
            .order_by_asc(reading_series::Column::Metric)
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.metric, s.first_ms, s.count))
            .collect()
    }

    /// Per metric: the readings the rollups count, and how many minutes they hold.
    async fn rolled_up(db: &DatabaseConnection) -> Vec<(String, i64, usize)> {
        let mut out: Vec<(String, i64, usize)> = Vec::new();
        for m in reading_minute::Entity::find()
            .order_by_asc(reading_minute::Column::Metric)
            .all(db)
            .await
            .unwrap()
        {
            match out.last_mut() {
                Some(last) if last.0 == m.metric => {
                    last.1 += m.count;
                    last.2 += 1;
                }
                _ => out.push((m.metric, m.count, 1)),
            }
        }
        out
    }

    async fn sweeps_on(db: DatabaseConnection) {
        let r = Retention::new(db.clone());
        let day = DAY_MS;
        // 12 000 od readings ten days old, a second apart (more than two delete batches, which
        // end at minutes), one five days old and one an hour old; temp at the same three ages.
        let mut od: Vec<i64> = (0..12_000).map(|i| NOW - 10 * day + i * 1000).collect();
        od.extend([NOW - 5 * day, NOW - 3_600_000]);
        store(&db, "od", "r1", &od).await;
        store(
            &db,
            "temp",
            "r2",
            &[NOW - 10 * day, NOW - 5 * day, NOW - 3_600_000],
        )
        .await;

        // No rule: nothing goes.
        assert_eq!(r.pass(NOW).await.unwrap(), Swept::default());
        // Every metric 30 days: still nothing.
        r.set_rule(None, Some(30), "t").await.unwrap();
        assert_eq!(r.pass(NOW).await.unwrap().readings, 0);
        // What is stored, counted from the catalog (with data: Postgres's SUM is NUMERIC).
        let storage = r.storage().await.unwrap();
        assert_eq!((storage.readings, storage.series), (12_005, 2));
        assert_eq!(
            rolled_up(&db).await,
            [
                ("od".to_owned(), 12_002, 200 + 2),
                ("temp".to_owned(), 3, 3)
            ]
        );
        // od 2 days: its ten- and five-day-old readings go, in batches; temp untouched.
        r.set_rule(Some("od"), Some(2), "t").await.unwrap();
        assert_eq!(
            r.pass(NOW).await.unwrap(),
            Swept {
                readings: 12_001,
                series_emptied: 0
            }
        );
        assert_eq!(
            catalog(&db).await,
            [
                ("od".to_owned(), NOW - 3_600_000, 1),
                ("temp".to_owned(), NOW - 10 * day, 3)
            ]
        );
        // The rollups went with their minutes.
        assert_eq!(
            rolled_up(&db).await,
            [("od".to_owned(), 1, 1), ("temp".to_owned(), 3, 3)]
        );
        // Every metric 7 days: temp's oldest goes.
        r.set_rule(None, Some(7), "t").await.unwrap();
        assert_eq!(r.pass(NOW).await.unwrap().readings, 1);
        assert_eq!(catalog(&db).await[1], ("temp".to_owned(), NOW - 5 * day, 2));
        // Later, everything is old: both series empty and leave the catalog.
        let later = NOW + 30 * day;
        assert_eq!(
            r.pass(later).await.unwrap(),
            Swept {
                readings: 3,
                series_emptied: 2
            }
        );
        assert!(catalog(&db).await.is_empty());
        assert_eq!(reading::Entity::find().count(&db).await.unwrap(), 0);
        assert!(rolled_up(&db).await.is_empty());
        let storage = r.storage().await.unwrap();
        assert_eq!((storage.readings, storage.series), (0, 0));
        assert!(storage.database_bytes > 0);

        // Bad rules are refused with the rule named.
        let e = r.set_rule(Some("od"), Some(0), "t").await.unwrap_err();
        assert!(
            e.log_message()
                .contains("days 0 must be between 1 and 36500"),
            "{e:?}"
        );
        // Removing a rule.
        let rules = r.set_rule(Some("od"), None, "t").await.unwrap();
        assert_eq!(rules.len(), 1);
    }

    #[tokio::test]
    async fn old_readings_are_deleted_by_their_rules_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        sweeps_on(crate::infra::db::connect(&url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn old_readings_are_deleted_by_their_rules_on_postgres() {
        crate::telemetry::ingest::tests::with_postgres("retention", sweeps_on).await;
    }
}
