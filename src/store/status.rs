//! What the poll job learned: server health, the last per-mount usage, and
//! the listener history behind the dashboard charts, kept as rollups
//! (peaks per 5 minutes for a day, per hour for the retention).

use sqlx::{FromRow, SqliteConnection};

use super::{Error, Result};
use crate::domain::text::{RELAY_TEXT_MAX, clean};
use crate::domain::{Health, MountUsage, PollSource};

#[derive(Debug, Clone, FromRow)]
pub(crate) struct HealthRow {
    pub server_id: i64,
    pub state: String,
    pub consecutive_failures: i64,
    pub consecutive_successes: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub last_poll_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub latency_ms: Option<i64>,
    pub source: Option<String>,
    /// The relay's cumulative `listener_connections` at that poll.
    pub listener_connections: Option<i64>,
}

impl HealthRow {
    pub fn health(&self) -> Health {
        Health::from_row(
            &self.state,
            self.consecutive_failures,
            self.consecutive_successes,
        )
    }
}

#[derive(Debug, Clone, FromRow)]
pub(crate) struct MountStatusRow {
    pub server_id: i64,
    pub mount: String,
    pub listeners: i64,
    pub max_listeners: Option<i64>,
}

pub(crate) async fn health_all(conn: &mut SqliteConnection) -> Result<Vec<HealthRow>> {
    Ok(sqlx::query_as::<_, HealthRow>(
        "SELECT server_id, state, consecutive_failures, consecutive_successes, last_error, \
         last_error_at, last_poll_at, last_success_at, latency_ms, source, listener_connections FROM server_health",
    )
    .fetch_all(conn)
    .await?)
}

pub(crate) async fn health_of(
    conn: &mut SqliteConnection,
    server_id: i64,
) -> Result<Option<HealthRow>> {
    Ok(sqlx::query_as::<_, HealthRow>(
        "SELECT server_id, state, consecutive_failures, consecutive_successes, last_error, \
         last_error_at, last_poll_at, last_success_at, latency_ms, source, listener_connections FROM server_health WHERE server_id = ?",
    )
    .bind(server_id)
    .fetch_optional(conn)
    .await?)
}

pub(crate) async fn mount_status_all(conn: &mut SqliteConnection) -> Result<Vec<MountStatusRow>> {
    Ok(sqlx::query_as::<_, MountStatusRow>(
        "SELECT server_id, mount, listeners, max_listeners FROM mount_status \
         ORDER BY server_id, mount",
    )
    .fetch_all(conn)
    .await?)
}

pub(crate) async fn mount_status_of(
    conn: &mut SqliteConnection,
    server_id: i64,
) -> Result<Vec<MountStatusRow>> {
    Ok(sqlx::query_as::<_, MountStatusRow>(
        "SELECT server_id, mount, listeners, max_listeners FROM mount_status \
         WHERE server_id = ? ORDER BY mount",
    )
    .bind(server_id)
    .fetch_all(conn)
    .await?)
}

/// The outcome of polling one server, ready to be written.
#[derive(Debug, Clone)]
pub(crate) struct PollRecord {
    pub server_id: i64,
    pub started_at: i64,
    pub latency_ms: i64,
    pub health: Health,
    /// `Ok((source, mounts))` or the error text.
    pub result: std::result::Result<(PollSource, Vec<MountUsage>), String>,
    /// The relay's cumulative `listener_connections`, when it reports it.
    pub connections: Option<u64>,
}

/// Writes one server's poll outcome. On success the server's mount list is
/// replaced (a mount the relay no longer lists is no longer live) and a
/// history sample is appended per mount; on failure the last known mounts
/// are kept for the dashboard, while health decides whether they are used.
pub(crate) async fn record_poll(conn: &mut SqliteConnection, r: &PollRecord) -> Result<()> {
    // The fetcher already cuts relay text; a record from elsewhere must
    // not bring more into the store.
    let (error, source, last_success) = match &r.result {
        Ok((source, _)) => (None, Some(source.file()), Some(r.started_at)),
        Err(e) => (Some(clean(e, RELAY_TEXT_MAX + 100)), None, None),
    };
    sqlx::query(
        "INSERT INTO server_health (server_id, state, consecutive_failures, consecutive_successes, \
           last_error, last_error_at, last_poll_at, last_success_at, latency_ms, source, \
           listener_connections) \
         VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?5 IS NULL THEN NULL ELSE ?6 END, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (server_id) DO UPDATE SET state = ?2, consecutive_failures = ?3, \
           consecutive_successes = ?4, last_error = COALESCE(?5, last_error), \
           last_error_at = CASE WHEN ?5 IS NULL THEN last_error_at ELSE ?6 END, \
           last_poll_at = ?6, last_success_at = COALESCE(?7, last_success_at), \
           latency_ms = ?8, source = COALESCE(?9, source), \
           listener_connections = CASE WHEN ?7 IS NULL THEN listener_connections ELSE ?10 END",
    )
    .bind(r.server_id)
    .bind(r.health.state.as_str())
    .bind(r.health.failures)
    .bind(r.health.successes)
    .bind(error)
    .bind(r.started_at)
    .bind(last_success)
    .bind(r.latency_ms)
    .bind(source)
    .bind(r.connections.map(|c| c.min(i64::MAX as u64) as i64))
    .execute(&mut *conn)
    .await?;

    if let Ok((_, mounts)) = &r.result {
        sqlx::query("DELETE FROM mount_status WHERE server_id = ?")
            .bind(r.server_id)
            .execute(&mut *conn)
            .await?;
        for m in mounts {
            sqlx::query(
                "INSERT OR REPLACE INTO mount_status (server_id, mount, listeners, max_listeners, \
                 seen_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(r.server_id)
            .bind(m.mount.as_str())
            .bind(i64::from(m.listeners))
            .bind(m.max.map(i64::from))
            .bind(r.started_at)
            .execute(&mut *conn)
            .await?;
            for (table, bucket_ms, _) in ROLLUPS {
                add_to_rollup(conn, table, *bucket_ms, r, m).await?;
            }
        }
    }
    Ok(())
}

/// History tables, their bucket sizes and how long each is kept (`None`:
/// the configured retention): minutes for the dashboard's last hour, 5
/// minutes for its day, hours for its week and the rest.
const ROLLUPS: &[(&str, i64, Option<i64>)] = &[
    ("history_1m", MIN_MS, Some(2 * HOUR_MS)),
    ("history_5m", 5 * MIN_MS, Some(24 * HOUR_MS)),
    ("history_1h", HOUR_MS, None),
];
const MIN_MS: i64 = 60 * 1000;
const HOUR_MS: i64 = 3600 * 1000;

/// The coarsest rollup whose buckets divide `bucket_ms` (the finest for
/// anything smaller).
fn rollup_for(bucket_ms: i64) -> &'static str {
    ROLLUPS
        .iter()
        .rev()
        .find(|(_, size, _)| bucket_ms >= *size && bucket_ms % size == 0)
        .map_or("history_1m", |(t, _, _)| t)
}

/// Raises the bucket's peak for `m` if it is a configured mount of the
/// server (a relay's other mounts get no history).
async fn add_to_rollup(
    conn: &mut SqliteConnection,
    table: &str,
    bucket_ms: i64,
    r: &PollRecord,
    m: &MountUsage,
) -> Result<()> {
    let bucket = r.started_at.div_euclid(bucket_ms) * bucket_ms;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (mount_id, bucket, listeners) \
         SELECT id, ?1, ?2 FROM mounts WHERE server_id = ?3 AND mount = ?4 \
         ON CONFLICT (mount_id, bucket) DO UPDATE SET listeners = MAX(listeners, excluded.listeners)"
    )))
    .bind(bucket)
    .bind(i64::from(m.listeners))
    .bind(r.server_id)
    .bind(m.mount.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Drops the buckets each rollup no longer keeps (the hourly one: older
/// than `before_ms`), then gives the freed pages back to the file system;
/// returns how many buckets went.
pub async fn prune_history(
    conn: &mut SqliteConnection,
    now_ms: i64,
    before_ms: i64,
) -> Result<u64> {
    let mut gone = 0;
    for (table, _, kept) in ROLLUPS {
        let cutoff = kept.map_or(before_ms, |k| now_ms - k);
        gone += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE bucket < ?"
        )))
        .bind(cutoff)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    if gone > 0 {
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&mut *conn)
            .await?;
    }
    Ok(gone)
}

#[derive(Debug, Clone, FromRow)]
pub struct HistoryPoint {
    pub at: i64,
    pub listeners: i64,
}

/// Listeners of a stream over time: per bucket of `bucket_ms` (at least
/// the rollup's), the peak of each mount, summed over the stream's mounts.
/// Read from the coarsest rollup whose buckets divide `bucket_ms`.
pub async fn stream_history(
    conn: &mut SqliteConnection,
    stream_id: i64,
    since_ms: i64,
    bucket_ms: i64,
) -> Result<Vec<HistoryPoint>> {
    let table = rollup_for(bucket_ms);
    Ok(
        sqlx::query_as::<_, HistoryPoint>(sqlx::AssertSqlSafe(format!(
            "SELECT b AS at, SUM(l) AS listeners FROM ( \
           SELECT (h.bucket / ?1) * ?1 AS b, h.mount_id, MAX(h.listeners) AS l \
           FROM mounts m JOIN {table} h ON h.mount_id = m.id \
           WHERE m.stream_id = ?2 AND h.bucket >= ?3 GROUP BY b, h.mount_id) \
         GROUP BY b ORDER BY b"
        )))
        .bind(bucket_ms.max(1))
        .bind(stream_id)
        .bind(since_ms)
        .fetch_all(conn)
        .await?,
    )
}

#[derive(Debug, Clone, FromRow)]
pub struct RelayPoint {
    pub at: i64,
    pub server_id: i64,
    pub listeners: i64,
}

/// Like [`stream_history`], but one line per relay (the peak of each of
/// its mounts of the stream per bucket, summed), for stacked charts.
pub async fn stream_history_by_server(
    conn: &mut SqliteConnection,
    stream_id: i64,
    since_ms: i64,
    bucket_ms: i64,
) -> Result<Vec<RelayPoint>> {
    let table = rollup_for(bucket_ms);
    // One row per relay with its points joined into text: each row crosses
    // from SQLite's thread to ours on its own, and a point per row (20
    // relays × 144 buckets per stream) made that hand-over most of the
    // dashboard's time.
    let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT server_id, group_concat(b || ':' || listeners, ',' ORDER BY b) FROM ( \
           SELECT b, server_id, SUM(l) AS listeners FROM ( \
             SELECT (h.bucket / ?1) * ?1 AS b, m.server_id, h.mount_id, MAX(h.listeners) AS l \
             FROM mounts m JOIN {table} h ON h.mount_id = m.id \
             WHERE m.stream_id = ?2 AND h.bucket >= ?3 GROUP BY b, h.mount_id) \
           GROUP BY b, server_id) \
         GROUP BY server_id ORDER BY server_id"
    )))
    .bind(bucket_ms.max(1))
    .bind(stream_id)
    .bind(since_ms)
    .fetch_all(conn)
    .await?;
    let mut points = Vec::new();
    for (server_id, joined) in rows {
        for pair in joined.split(',') {
            let parsed = pair
                .split_once(':')
                .and_then(|(at, l)| Some((at.parse().ok()?, l.parse().ok()?)));
            let Some((at, listeners)) = parsed else {
                return Err(Error::BadRow(format!(
                    "history point {pair:?} of server {server_id} is malformed"
                )));
            };
            points.push(RelayPoint {
                at,
                server_id,
                listeners,
            });
        }
    }
    Ok(points)
}
