//! Streams: what a listener asks for by name.

use sqlx::{AssertSqlSafe, FromRow, SqliteConnection};

use super::now_ms;
use super::{Error, Result};
use crate::domain::{CountryCode, HttpUrl, Slug, StreamSpec};

#[derive(Debug, Clone, FromRow)]
pub struct StreamRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub fallback_url: Option<String>,
    pub allowed_countries: Option<String>,
    pub allow_unknown: bool,
    /// Listeners who came over HTTPS go only to relays with an https_url.
    pub require_https: bool,
    pub bitrate_kbps: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl StreamRow {
    pub fn allowed_countries(&self) -> Option<Vec<CountryCode>> {
        self.allowed_countries.as_deref().map(|s| {
            s.split(',')
                .filter_map(|c| CountryCode::parse(c).ok())
                .collect()
        })
    }

    pub fn spec(&self) -> Result<StreamSpec> {
        let bad = |what: &str, e: String| {
            Error::BadRow(format!(
                "stream {:?} in the database has a bad {what}: {e}",
                self.name
            ))
        };
        Ok(StreamSpec {
            name: Slug::parse(&self.name).map_err(|e| bad("name", e))?,
            description: self.description.clone(),
            fallback_url: self
                .fallback_url
                .as_deref()
                .map(HttpUrl::parse)
                .transpose()
                .map_err(|e| bad("fallback_url", e))?,
            allowed_countries: self.allowed_countries(),
            allow_unknown: self.allow_unknown,
            require_https: self.require_https,
            bitrate_kbps: self
                .bitrate_kbps
                .map(crate::domain::policy::parse_bitrate)
                .transpose()
                .map_err(|e| bad("bitrate_kbps", e))?,
        })
    }
}

const COLUMNS: &str = "id, name, description, fallback_url, allowed_countries, allow_unknown, require_https, \
     bitrate_kbps, created_at, updated_at";

fn countries_column(s: &StreamSpec) -> Option<String> {
    s.allowed_countries.as_ref().map(|list| {
        list.iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    })
}

pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<StreamRow>> {
    Ok(sqlx::query_as::<_, StreamRow>(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM streams ORDER BY name"
    )))
    .fetch_all(conn)
    .await?)
}

pub async fn get(conn: &mut SqliteConnection, id: i64) -> Result<StreamRow> {
    sqlx::query_as::<_, StreamRow>(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM streams WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("no stream with id {id}")))
}

pub async fn find_by_name(conn: &mut SqliteConnection, name: &str) -> Result<Option<StreamRow>> {
    Ok(sqlx::query_as::<_, StreamRow>(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM streams WHERE name = ?"
    )))
    .bind(name)
    .fetch_optional(conn)
    .await?)
}

pub async fn insert(conn: &mut SqliteConnection, s: &StreamSpec) -> Result<i64> {
    let now = now_ms();
    sqlx::query_scalar::<_, i64>(
        "INSERT INTO streams (name, description, fallback_url, allowed_countries, allow_unknown, \
         require_https, bitrate_kbps, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(s.name.as_str())
    .bind(&s.description)
    .bind(s.fallback_url.as_ref().map(HttpUrl::as_str))
    .bind(countries_column(s))
    .bind(s.allow_unknown)
    .bind(s.require_https)
    .bind(s.bitrate_kbps.map(i64::from))
    .bind(now)
    .bind(now)
    .fetch_one(conn)
    .await
    .map_err(|e| Error::from_unique(e, "name", s.name.as_str()))
}

pub async fn update(conn: &mut SqliteConnection, id: i64, s: &StreamSpec) -> Result<()> {
    let done = sqlx::query(
        "UPDATE streams SET name = ?, description = ?, fallback_url = ?, allowed_countries = ?, \
         allow_unknown = ?, require_https = ?, bitrate_kbps = ?, updated_at = ? WHERE id = ?",
    )
    .bind(s.name.as_str())
    .bind(&s.description)
    .bind(s.fallback_url.as_ref().map(HttpUrl::as_str))
    .bind(countries_column(s))
    .bind(s.allow_unknown)
    .bind(s.require_https)
    .bind(s.bitrate_kbps.map(i64::from))
    .bind(now_ms())
    .bind(id)
    .execute(conn)
    .await
    .map_err(|e| Error::from_unique(e, "name", s.name.as_str()))?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no stream with id {id}")));
    }
    Ok(())
}

pub async fn delete(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    let done = sqlx::query("DELETE FROM streams WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no stream with id {id}")));
    }
    Ok(())
}
