//! Hourly redirect counts per stream and client country (bounded: rows
//! older than the retention are pruned at each flush).

use sqlx::{FromRow, SqliteConnection};

use super::Result;

pub const HOUR_MS: i64 = 3600 * 1000;

pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// Adds `redirects` to the stream's count for `country` in `hour`.
pub async fn add(
    conn: &mut SqliteConnection,
    stream_id: i64,
    hour: i64,
    country: &str,
    redirects: u64,
) -> Result<()> {
    sqlx::query(
        // A stream deleted since the redirects were counted takes them along.
        "INSERT INTO country_counts (stream_id, hour, country, redirects) \
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM streams WHERE id = ?1) \
         ON CONFLICT (stream_id, hour, country) DO UPDATE SET redirects = redirects + excluded.redirects",
    )
    .bind(stream_id)
    .bind(hour)
    .bind(country)
    .bind(i64::try_from(redirects).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn prune(conn: &mut SqliteConnection, before_ms: i64) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM country_counts WHERE hour < ?")
        .bind(before_ms)
        .execute(conn)
        .await?
        .rows_affected())
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct CountryTotal {
    pub country: String,
    pub redirects: i64,
}

/// Redirects per country of one stream since `since_ms`, most first.
pub async fn totals(
    conn: &mut SqliteConnection,
    stream_id: i64,
    since_ms: i64,
) -> Result<Vec<CountryTotal>> {
    Ok(sqlx::query_as::<_, CountryTotal>(
        "SELECT country, SUM(redirects) AS redirects FROM country_counts \
         WHERE stream_id = ? AND hour >= ? GROUP BY country ORDER BY redirects DESC, country",
    )
    .bind(stream_id)
    .bind(since_ms)
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct HourRow {
    pub stream: String,
    pub hour: i64,
    pub country: String,
    pub redirects: i64,
}

/// Every hourly count since `since_ms` (of one stream, or all), by stream,
/// hour and country: the CSV export.
pub async fn hourly(
    conn: &mut SqliteConnection,
    stream_id: Option<i64>,
    since_ms: i64,
) -> Result<Vec<HourRow>> {
    Ok(sqlx::query_as::<_, HourRow>(
        "SELECT s.name AS stream, c.hour, c.country, c.redirects FROM country_counts c \
         JOIN streams s ON s.id = c.stream_id \
         WHERE c.hour >= ?1 AND (?2 IS NULL OR c.stream_id = ?2) \
         ORDER BY s.name, c.hour, c.country",
    )
    .bind(since_ms)
    .bind(stream_id)
    .fetch_all(conn)
    .await?)
}
