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
        opts.max_connections(8).map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    } else {
        opts.max_connections(16);
    }
    let db = Database::connect(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", redact(url)))?;
    Ok(db)
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
