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
    incremental_vacuum_mode(&pool)
        .await
        .with_context(|| format!("cannot set up space reclaiming in {}", path.display()))?;
    Ok(pool)
}

/// Pruned history gives its pages back to the file system (`PRAGMA
/// incremental_vacuum` after each prune) only in `auto_vacuum =
/// INCREMENTAL` mode, which an existing file enters through one `VACUUM`:
/// done once, at the first start that needs it.
async fn incremental_vacuum_mode(pool: &Pool) -> sqlx::Result<()> {
    const INCREMENTAL: i64 = 2;
    let mut conn = pool.acquire().await?;
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut *conn)
        .await?;
    if mode != INCREMENTAL {
        tracing::info!("switching the database to incremental vacuum (one VACUUM)");
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(&mut *conn)
            .await?;
        sqlx::query("VACUUM").execute(&mut *conn).await?;
    }
    Ok(())
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
