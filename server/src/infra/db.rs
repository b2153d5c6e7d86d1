//! Database connection and migrations. SQLite is the embedded default; a `postgres://` URL selects
//! Postgres. SQLite runs in WAL mode with `synchronous = NORMAL`, set explicitly because sqlx leaves
//! journal mode DELETE otherwise: a committed transaction survives a process crash (sqlite.org/
//! pragma.html#pragma_synchronous), and only an OS crash or power loss can roll back the last ones.

use std::{path::Path, str::FromStr, time::Duration};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection,
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

/// Opens the database (creating the SQLite file and its directory) and applies pending migrations.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let db = open(url).await?;
    Migrator::up(&db, None)
        .await
        .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))?;
    Ok(db)
}

/// Opens the database (creating the SQLite file and its directory) without migrating it.
pub async fn open(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        // Validate the URL here, so a bad one is reported as such and not as a driver panic.
        SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid database_url {url:?}: {e}"))?;
        if let Some(path) = sqlite_path(url)
            && let Some(dir) = Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create data directory {}: {e}", dir.display())
            })?;
        }
        opts.max_connections(8)
            .map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            })
            .map_sqlx_sqlite_pool_opts(|o| o.after_release(|conn, _| Box::pin(still_clean(conn))));
    } else {
        opts.max_connections(16);
    }
    let db = Database::connect(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", redact(url)))?;
    Ok(db)
}

/// Whether a SQLite connection given back to the pool may be used again: not when it still
/// counts itself in a transaction once its pending rollback has run. On a full disk (or an I/O
/// error) SQLite may roll a transaction back by itself; the driver's ROLLBACK then fails and it
/// goes on counting the transaction, so its next `begin` would be a SAVEPOINT, and a rollback of
/// that would leave a real transaction open, holding the write lock for ever: every other
/// writer "locked", long after the disk had room again. Such a connection is closed instead.
async fn still_clean(
    conn: &mut sea_orm::sqlx::SqliteConnection,
) -> Result<bool, sea_orm::sqlx::Error> {
    use sea_orm::sqlx::Connection;
    // The ping runs after the rollback a dropped transaction queued.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!("a database connection still in a transaction after its rollback is closed");
        return Ok(false);
    }
    Ok(true)
}

/// The file path of a `sqlite://` URL, without query parameters; `None` for in-memory databases.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// The URL with any password replaced, for log lines and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Why `e` is the database being out of reach or unable to write (a connection refused or cut,
/// a pool with no connection to give, a file locked, read-only or on a full disk), in words a
/// client may read; `None` for any other failure (a bad statement, a constraint: a bug). An
/// outage is worth retrying, and the API answers it with `UNAVAILABLE`.
pub fn outage(e: &sea_orm::DbErr) -> Option<&'static str> {
    use sea_orm::{DbErr, RuntimeErr, sqlx::Error};
    const UNREACHABLE: &str = "the database cannot be reached";
    let sqlx = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return Some(UNREACHABLE),
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => s,
        _ => return None,
    };
    match sqlx.as_ref() {
        Error::Io(_)
        | Error::Tls(_)
        | Error::Protocol(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => Some(UNREACHABLE),
        Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // SQLite's result codes (extended ones carry the primary in their low byte). By the
            // driver, not the code's look: most Postgres SQLSTATEs are all digits too.
            if d.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
            {
                let n = code.parse::<u32>().unwrap_or(0);
                return match n & 0xff {
                    5 | 6 => Some(LOCKED),
                    8 => Some("the database is read-only"),
                    10 | 14 => Some("the database cannot read or write its files"),
                    13 => Some("the database's disk is full"),
                    _ => None,
                };
            }
            // Postgres' SQLSTATE classes: 08 connection, 53 resources (53100 disk full),
            // 57P01-57P03 the server shutting down or starting.
            match code.get(..2) {
                Some("08") => Some(UNREACHABLE),
                Some("53") if code == "53100" => Some("the database's disk is full"),
                Some("53") => Some("the database is out of resources"),
                Some("57") if code.starts_with("57P0") => Some(UNREACHABLE),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The row a primary or unique key finds, if any: [`sea_orm::Select::one`] without its `LIMIT`.
/// `one` binds `LIMIT ?`, and SQLite plans a LIMIT with its bound value, so each later binding
/// expires the prepared statement, which is parsed and planned again at every use
/// (`sqlite3Reprepare`: a twentieth of the leader's CPU with a hundred live charts open, from
/// the ingester's lookups and each socket's credential check). For lookups that run often.
pub async fn by_key<E: sea_orm::EntityTrait>(
    select: sea_orm::Select<E>,
    db: &impl sea_orm::ConnectionTrait,
) -> Result<Option<E::Model>, sea_orm::DbErr> {
    Ok(select.all(db).await?.pop())
}

/// What a lock held too long by another writer is called.
const LOCKED: &str = "the database is locked";

/// The last outage a writer or a request met, and when; cleared by a write that works. Read by
/// `/readyz`: a database that answers a ping but cannot write (a full disk) is not ready. One
/// per process, as the database is.
static LAST_OUTAGE: std::sync::Mutex<Option<(std::time::Instant, &'static str)>> =
    std::sync::Mutex::new(None);

/// How long an outage met by a request alone (no writer to clear it) counts for `/readyz`.
pub const OUTAGE_SHOWN_FOR: Duration = Duration::from_secs(15);

/// Notes an outage met now (for `/readyz`). A lock is another writer's moment, not an outage of
/// the database: not noted.
pub fn note_outage(why: &'static str) {
    if why == LOCKED {
        return;
    }
    if let Ok(mut last) = LAST_OUTAGE.lock() {
        *last = Some((std::time::Instant::now(), why));
    }
}

/// Notes a write that worked: the database is back.
pub fn note_write_ok() {
    if let Ok(mut last) = LAST_OUTAGE.lock() {
        *last = None;
    }
}

/// The outage met within [`OUTAGE_SHOWN_FOR`] and not cleared since, if any.
pub fn recent_outage() -> Option<&'static str> {
    let last = LAST_OUTAGE.lock().ok()?;
    last.filter(|(at, _)| at.elapsed() < OUTAGE_SHOWN_FOR)
        .map(|(_, why)| why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, Statement};

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[tokio::test]
    async fn sqlite_is_created_in_wal_mode_and_migrations_rerun_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/t.db", dir.path().display());
        let db = connect(&url).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "PRAGMA journal_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "wal");
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "PRAGMA synchronous",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<i32>(0).unwrap(), 1, "NORMAL");
        drop(db);
        // Second start on the same file: migrations are already applied and nothing fails.
        let db = connect(&url).await.unwrap();
        assert_eq!(
            Migrator::get_pending_migrations(&db).await.unwrap().len(),
            0
        );
    }

    #[tokio::test]
    async fn a_bad_url_is_a_clear_error() {
        let e = connect("sqlite:///proc/forbidden/x.db")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("/proc/forbidden"), "{e}");
    }
}
