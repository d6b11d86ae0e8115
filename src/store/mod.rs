//! SQLite access, one module per aggregate. Queries are checked at run time
//! (`query_as::<_, Row>`), so building needs no database.
//!
//! Functions that write take `&mut SqliteConnection` so callers can group
//! several writes into one transaction (import does; a form save is one).

pub mod audit;
pub mod changes;
pub mod countries;
pub mod mounts;
pub mod servers;
pub mod sessions;
pub mod status;
pub mod streams;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

pub type Pool = SqlitePool;

fn options(path: &Path) -> anyhow::Result<SqliteConnectOptions> {
    let url = format!("sqlite://{}", path.display());
    Ok(SqliteConnectOptions::from_str(&url)
        .with_context(|| format!("bad database path {}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Another process (cron poll, import) may hold the write lock briefly.
        .busy_timeout(Duration::from_secs(5)))
}

/// Opens (creating if needed) and migrates the database.
pub async fn connect(path: &Path) -> anyhow::Result<Pool> {
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options(path)?)
        .await
        .with_context(|| format!("cannot open database {}", path.display()))?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .with_context(|| format!("cannot migrate database {}", path.display()))?;
    Ok(pool)
}

/// A connection of its own for `PRAGMA data_version`, which only changes
/// when *another* connection commits: that is how a running server notices
/// an import or a cron poll made by a different process.
pub async fn watcher_connection(path: &Path) -> anyhow::Result<SqliteConnection> {
    Ok(SqliteConnection::connect_with(&options(path)?).await?)
}

pub async fn data_version(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(conn)
        .await
}

/// A transaction that will write. `BEGIN IMMEDIATE` takes the write lock
/// up front (waiting out the busy timeout), where a deferred transaction
/// that reads first could fail outright if another connection wrote in
/// between.
pub async fn write_tx(pool: &Pool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// The system clock, for timestamps that only record when something was
/// written; timing that decides routing goes through the injected
/// [`crate::domain::Clock`].
pub fn now_ms() -> i64 {
    crate::domain::clock::system_ms()
}
