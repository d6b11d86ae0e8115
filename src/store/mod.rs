//! SQLite access, one module per aggregate. Queries are checked at run time
//! (`query_as::<_, Row>`), so building needs no database.
//!
//! Functions that write take `&mut SqliteConnection` so callers can group
//! several writes into one transaction (import does; a form save is one).

pub(crate) mod announced;
pub mod audit;
pub mod changes;
pub(crate) mod countries;
mod error;
pub(crate) mod mounts;
pub mod servers;
pub(crate) mod sessions;
pub mod status;
pub mod streams;
pub mod tokens;
pub mod users;
pub(crate) mod versions;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::sqlite::{SqliteQueryResult, SqliteRow, SqliteStatement, SqliteTypeInfo};
use sqlx::{
    Connection, Describe, Either, Execute, Executor, SqlStr, Sqlite, SqliteConnection, SqlitePool,
};

pub use error::{Error, Result};

/// The database: sqlx's connection pool (reached through `Deref`) and what
/// this pool has learnt about its file, which the pool's own callbacks and
/// [`write_tx`] share.
#[derive(Clone, Debug)]
pub struct Pool {
    pool: SqlitePool,
    read_only: Arc<ReadOnlyWatch>,
}

impl std::ops::Deref for Pool {
    type Target = SqlitePool;

    fn deref(&self) -> &SqlitePool {
        &self.pool
    }
}

type BoxFuture<'e, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'e>>;
type BoxStream<'e, T> = std::pin::Pin<Box<dyn futures_core::Stream<Item = T> + Send + 'e>>;

/// `&Pool` runs queries as sqlx's `&SqlitePool` does (each on a connection
/// of its own), so reads need not know about the wrapper.
impl<'p> Executor<'p> for &'_ Pool {
    type Database = Sqlite;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, sqlx::Result<Either<SqliteQueryResult, SqliteRow>>>
    where
        E: 'q + Execute<'q, Sqlite>,
    {
        (&self.pool).fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, sqlx::Result<Option<SqliteRow>>>
    where
        E: 'q + Execute<'q, Sqlite>,
    {
        (&self.pool).fetch_optional(query)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [SqliteTypeInfo],
    ) -> BoxFuture<'e, sqlx::Result<SqliteStatement>>
    where
        'p: 'e,
    {
        (&self.pool).prepare_with(sql, parameters)
    }

    // Part of the trait while sqlx's `macros` feature is on (it is).
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, sqlx::Result<Describe<Sqlite>>> {
        (&self.pool).describe(sql)
    }
}

/// Connections never create the file: once the database exists, a file
/// deleted under a running server must make new connections fail loudly,
/// not start an empty database beside the old one. [`connect`] creates it
/// once, up front.
fn options(path: &Path) -> anyhow::Result<SqliteConnectOptions> {
    let url = format!("sqlite://{}", path.display());
    Ok(SqliteConnectOptions::from_str(&url)
        .with_context(|| format!("bad database path {}", path.display()))?
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Another process (cron poll, import) may hold the write lock briefly.
        .busy_timeout(Duration::from_secs(5)))
}

/// Opens (creating if needed) and migrates the database.
pub async fn connect(path: &Path) -> anyhow::Result<Pool> {
    // SQLite's own message for this ("unable to open database file",
    // twice over) does not say which part is missing.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        anyhow::bail!(
            "cannot create database {}: the directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if !path.exists() {
        let create = options(path)?.create_if_missing(true);
        SqliteConnection::connect_with(&create)
            .await
            .with_context(|| format!("cannot open database {} (creating it)", path.display()))?
            .close()
            .await?;
    }
    let read_only = Arc::new(ReadOnlyWatch::new());
    let (on_release, on_acquire) = (read_only.clone(), read_only.clone());
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .after_release(move |conn, meta| Box::pin(reusable(conn, meta, on_release.clone())))
        // An idle connection that predates a read-only refusal is as
        // suspect as one being released: never handed out again.
        .before_acquire(move |_, meta| {
            let suspect = on_acquire.opened_before_refusal(meta.age);
            Box::pin(async move { Ok(!suspect) })
        })
        .connect_with(options(path)?)
        .await
        .with_context(|| format!("cannot open database {}", path.display()))?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .with_context(|| format!("cannot migrate database {}", path.display()))?;
    let pool = Pool { pool, read_only };
    incremental_vacuum_mode(&pool)
        .await
        .with_context(|| format!("cannot set up space reclaiming in {}", path.display()))?;
    Ok(pool)
}

/// Fails, naming the path and how to set it, when there is no database
/// file at `path`.
pub fn require_existing(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "no database at {}: give its path with --database PATH (or ICECAST_BALANCER_DATABASE); \
             only `serve` and `import` create one",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// Whether a connection going back to the pool can serve the next caller.
/// One whose COMMIT or ROLLBACK failed (disk full, read-only file) is still
/// "in a transaction" as far as sqlx knows, and every later `BEGIN` on it
/// would fail with "begin_with at non-zero transaction depth": closed
/// instead, so writes recover by themselves once the fault is gone.
async fn reusable(
    conn: &mut SqliteConnection,
    meta: PoolConnectionMetadata,
    read_only: Arc<ReadOnlyWatch>,
) -> sqlx::Result<bool> {
    // The ping runs after any rollback a dropped transaction queued.
    if conn.ping().await.is_err() || conn.is_in_transaction() {
        tracing::warn!("closing a database connection left in a failed transaction");
        return Ok(false);
    }
    if read_only.opened_before_refusal(meta.age) {
        tracing::warn!("closing a database connection that may have opened its WAL read-only");
        return Ok(false);
    }
    Ok(true)
}

/// A connection opened while the WAL file could not be written keeps it
/// read-only for the connection's life, even after the fault is gone (and
/// SQLite offers no call to ask). So once a write is refused as read-only,
/// every connection that existed then is retired on release; those opened
/// afterwards are retired too if the fault is still there, and the first
/// ones opened once it is gone stay.
#[derive(Debug)]
struct ReadOnlyWatch {
    created: Instant,
    /// When a write last found the database read-only, in ms since
    /// `created` plus one; 0 for never.
    seen_ms: AtomicU64,
}

impl ReadOnlyWatch {
    fn new() -> ReadOnlyWatch {
        ReadOnlyWatch {
            created: Instant::now(),
            seen_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.created).as_millis() as u64 + 1
    }

    /// Returns whether `e` was a read-only refusal, noting when if it was.
    fn note_write_error(&self, e: &sqlx::Error) -> bool {
        let read_only = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| is_read_only(&c));
        if read_only {
            self.refused_now();
        }
        read_only
    }

    fn refused_now(&self) {
        self.seen_ms
            .fetch_max(self.ms(Instant::now()), Ordering::Relaxed);
    }

    /// Whether a connection `age` old existed when the last refusal came.
    fn opened_before_refusal(&self, age: Duration) -> bool {
        let seen = self.seen_ms.load(Ordering::Relaxed);
        let opened = Instant::now().checked_sub(age).unwrap_or(self.created);
        seen != 0 && self.ms(opened) <= seen
    }
}

/// SQLite reports a read-only refusal as `SQLITE_READONLY` (8) or one of
/// its extended codes (8 in the low byte): `_CANTINIT` and `_RECOVERY` when
/// the shared-memory file could only be opened read-only, `_DBMOVED`,
/// `_CANTLOCK`… sqlx gives the extended code, so all of them count.
fn is_read_only(code: &str) -> bool {
    const SQLITE_READONLY: i32 = 8;
    code.parse::<i32>()
        .is_ok_and(|c| c & 0xff == SQLITE_READONLY)
}

/// Writes the WAL back into the database file and closes the pool, so a
/// plain copy of the file taken after a CLI command has everything.
pub async fn close(pool: Pool) {
    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
    {
        tracing::warn!(error = %e, "WAL checkpoint at exit failed");
    }
    pool.close().await;
}

/// Identity of the database file on disk (device and inode), to notice it
/// being deleted or replaced under the running server.
pub(crate) fn file_identity(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    Some((0, m.len()))
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

pub(crate) async fn data_version(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(conn)
        .await
}

/// A transaction that will write. `BEGIN IMMEDIATE` takes the write lock
/// up front (waiting out the busy timeout), where a deferred transaction
/// that reads first could fail outright if another connection wrote in
/// between.
///
/// Refused as read-only, it is tried once more: the refusal retires every
/// connection that existed then, so the second try runs on a fresh one,
/// which succeeds if the fault is gone (a connection opened while it was
/// there, but after the last refusal, would otherwise fail one more write).
pub(crate) async fn write_tx(
    pool: &Pool,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
    match pool.begin_with("BEGIN IMMEDIATE").await {
        Err(e) if pool.read_only.note_write_error(&e) => {
            let tx = pool.begin_with("BEGIN IMMEDIATE").await;
            if let Err(e) = &tx {
                pool.read_only.note_write_error(e);
            }
            tx
        }
        tx => tx,
    }
}

/// The system clock, for timestamps that only record when something was
/// written; timing that decides routing goes through the injected
/// [`crate::domain::Clock`].
pub fn now_ms() -> i64 {
    crate::domain::clock::system_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_retires_the_connections_of_its_own_pool_only() {
        let (refused, other) = (ReadOnlyWatch::new(), ReadOnlyWatch::new());
        std::thread::sleep(Duration::from_millis(5));
        let old = refused.created.elapsed();
        assert!(!refused.opened_before_refusal(old));
        refused.refused_now();
        assert!(refused.opened_before_refusal(old));
        assert!(!other.opened_before_refusal(other.created.elapsed()));
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !refused.opened_before_refusal(Duration::ZERO),
            "opened after it"
        );
    }

    #[test]
    fn every_read_only_code_counts_and_only_those() {
        for code in ["8", "264", "520", "776", "1032", "1288", "1544"] {
            assert!(is_read_only(code), "{code}");
        }
        for code in ["5", "13", "2067", "x", ""] {
            assert!(!is_read_only(code), "{code}");
        }
    }
}
