//! What the poll job learned: server health, the last per-mount usage, and
//! the bounded history of samples behind the dashboard charts.

use sqlx::{FromRow, SqliteConnection};

use crate::domain::{Health, MountUsage, PollSource};
use crate::error::Result;

#[derive(Debug, Clone, FromRow)]
pub struct HealthRow {
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
pub struct MountStatusRow {
    pub server_id: i64,
    pub mount: String,
    pub listeners: i64,
    pub max_listeners: Option<i64>,
    pub seen_at: i64,
}

pub async fn health_all(conn: &mut SqliteConnection) -> Result<Vec<HealthRow>> {
    Ok(sqlx::query_as::<_, HealthRow>(
        "SELECT server_id, state, consecutive_failures, consecutive_successes, last_error, \
         last_error_at, last_poll_at, last_success_at, latency_ms, source FROM server_health",
    )
    .fetch_all(conn)
    .await?)
}

pub async fn health_of(conn: &mut SqliteConnection, server_id: i64) -> Result<Option<HealthRow>> {
    Ok(sqlx::query_as::<_, HealthRow>(
        "SELECT server_id, state, consecutive_failures, consecutive_successes, last_error, \
         last_error_at, last_poll_at, last_success_at, latency_ms, source FROM server_health WHERE server_id = ?",
    )
    .bind(server_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn mount_status_all(conn: &mut SqliteConnection) -> Result<Vec<MountStatusRow>> {
    Ok(sqlx::query_as::<_, MountStatusRow>(
        "SELECT server_id, mount, listeners, max_listeners, seen_at FROM mount_status \
         ORDER BY server_id, mount",
    )
    .fetch_all(conn)
    .await?)
}

pub async fn mount_status_of(
    conn: &mut SqliteConnection,
    server_id: i64,
) -> Result<Vec<MountStatusRow>> {
    Ok(sqlx::query_as::<_, MountStatusRow>(
        "SELECT server_id, mount, listeners, max_listeners, seen_at FROM mount_status \
         WHERE server_id = ? ORDER BY mount",
    )
    .bind(server_id)
    .fetch_all(conn)
    .await?)
}

/// The outcome of polling one server, ready to be written.
#[derive(Debug, Clone)]
pub struct PollRecord {
    pub server_id: i64,
    pub started_at: i64,
    pub latency_ms: i64,
    pub health: Health,
    /// `Ok((source, mounts))` or the error text.
    pub result: std::result::Result<(PollSource, Vec<MountUsage>), String>,
}

/// Writes one server's poll outcome. On success the server's mount list is
/// replaced (a mount the relay no longer lists is no longer live) and a
/// history sample is appended per mount; on failure the last known mounts
/// are kept for the dashboard, while health decides whether they are used.
pub async fn record_poll(conn: &mut SqliteConnection, r: &PollRecord) -> Result<()> {
    let (error, source, last_success) = match &r.result {
        Ok((source, _)) => (None, Some(source.file()), Some(r.started_at)),
        Err(e) => (Some(e.as_str()), None, None),
    };
    sqlx::query(
        "INSERT INTO server_health (server_id, state, consecutive_failures, consecutive_successes, \
           last_error, last_error_at, last_poll_at, last_success_at, latency_ms, source) \
         VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?5 IS NULL THEN NULL ELSE ?6 END, ?6, ?7, ?8, ?9) \
         ON CONFLICT (server_id) DO UPDATE SET state = ?2, consecutive_failures = ?3, \
           consecutive_successes = ?4, last_error = COALESCE(?5, last_error), \
           last_error_at = CASE WHEN ?5 IS NULL THEN last_error_at ELSE ?6 END, \
           last_poll_at = ?6, last_success_at = COALESCE(?7, last_success_at), \
           latency_ms = ?8, source = COALESCE(?9, source)",
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
    .execute(&mut *conn)
    .await?;

    if let Ok((_, mounts)) = &r.result {
        sqlx::query("DELETE FROM mount_status WHERE server_id = ?")
            .bind(r.server_id)
            .execute(&mut *conn)
            .await?;
        for m in mounts {
            let max = m.max.map(i64::from);
            sqlx::query(
                "INSERT OR REPLACE INTO mount_status (server_id, mount, listeners, max_listeners, \
                 seen_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(r.server_id)
            .bind(m.mount.as_str())
            .bind(i64::from(m.listeners))
            .bind(max)
            .bind(r.started_at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO mount_history (server_id, mount, at, listeners, max_listeners) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(r.server_id)
            .bind(m.mount.as_str())
            .bind(r.started_at)
            .bind(i64::from(m.listeners))
            .bind(max)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Drops history older than `before_ms`; returns how many samples went.
pub async fn prune_history(conn: &mut SqliteConnection, before_ms: i64) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM mount_history WHERE at < ?")
        .bind(before_ms)
        .execute(conn)
        .await?
        .rows_affected())
}

#[derive(Debug, Clone, FromRow)]
pub struct HistoryPoint {
    pub at: i64,
    pub listeners: i64,
}

/// Listeners of a stream over time: per bucket of `bucket_ms`, the peak of
/// each mount, summed over the stream's mounts (servers are polled at
/// slightly different instants, so samples only line up by bucket).
pub async fn stream_history(
    conn: &mut SqliteConnection,
    stream_id: i64,
    since_ms: i64,
    bucket_ms: i64,
) -> Result<Vec<HistoryPoint>> {
    Ok(sqlx::query_as::<_, HistoryPoint>(
        "SELECT b AS at, SUM(l) AS listeners FROM ( \
           SELECT (h.at / ?1) * ?1 AS b, h.server_id, h.mount, MAX(h.listeners) AS l \
           FROM mount_history h \
           JOIN mounts m ON m.server_id = h.server_id AND m.mount = h.mount \
           WHERE m.stream_id = ?2 AND h.at >= ?3 GROUP BY b, h.server_id, h.mount) \
         GROUP BY b ORDER BY b",
    )
    .bind(bucket_ms.max(1))
    .bind(stream_id)
    .bind(since_ms)
    .fetch_all(conn)
    .await?)
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
    Ok(sqlx::query_as::<_, RelayPoint>(
        "SELECT b AS at, server_id, SUM(l) AS listeners FROM ( \
           SELECT (h.at / ?1) * ?1 AS b, h.server_id, h.mount, MAX(h.listeners) AS l \
           FROM mount_history h \
           JOIN mounts m ON m.server_id = h.server_id AND m.mount = h.mount \
           WHERE m.stream_id = ?2 AND h.at >= ?3 GROUP BY b, h.server_id, h.mount) \
         GROUP BY b, server_id ORDER BY server_id, b",
    )
    .bind(bucket_ms.max(1))
    .bind(stream_id)
    .bind(since_ms)
    .fetch_all(conn)
    .await?)
}
