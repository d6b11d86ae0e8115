//! Servers (Icecast relays).

use sqlx::{AssertSqlSafe, FromRow, SqliteConnection};

use super::now_ms;
use super::{Error, Result};
use crate::domain::{CountryCode, HttpUrl, Latitude, Longitude, ServerSpec, Slug, Weight};

#[derive(Debug, Clone, FromRow)]
pub struct ServerRow {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub https_url: Option<String>,
    pub poll_url: Option<String>,
    pub country: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub max_listeners: Option<i64>,
    pub weight: i64,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ServerRow {
    /// Rows were written from a parsed spec, so they parse back; a row edited
    /// by hand into something invalid is reported rather than used.
    pub fn spec(&self) -> Result<ServerSpec> {
        let bad = |what: &str, e: String| {
            Error::BadRow(format!(
                "server {:?} in the database has a bad {what}: {e}",
                self.name
            ))
        };
        Ok(ServerSpec {
            name: Slug::parse(&self.name).map_err(|e| bad("name", e))?,
            url: HttpUrl::parse(&self.url).map_err(|e| bad("url", e))?,
            https_url: self
                .https_url
                .as_deref()
                .map(HttpUrl::parse)
                .transpose()
                .map_err(|e| bad("https_url", e))?,
            poll_url: self
                .poll_url
                .as_deref()
                .map(HttpUrl::parse)
                .transpose()
                .map_err(|e| bad("poll_url", e))?,
            country: self
                .country
                .as_deref()
                .map(CountryCode::parse)
                .transpose()
                .map_err(|e| bad("country", e))?,
            latitude: self
                .latitude
                .map(Latitude::new)
                .transpose()
                .map_err(|e| bad("latitude", e))?,
            longitude: self
                .longitude
                .map(Longitude::new)
                .transpose()
                .map_err(|e| bad("longitude", e))?,
            max_listeners: self.max_listeners.and_then(|v| u32::try_from(v).ok()),
            weight: Weight::new(self.weight).map_err(|e| bad("weight", e))?,
            enabled: self.enabled,
        })
    }

    /// Where load.xsl is read: `poll_url` if set, else the listener URL.
    pub(crate) fn poll_base(&self) -> &str {
        self.poll_url.as_deref().unwrap_or(&self.url)
    }
}

const COLUMNS: &str = "id, name, url, https_url, poll_url, country, latitude, longitude, \
                       max_listeners, weight, enabled, created_at, updated_at";

pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<ServerRow>> {
    Ok(sqlx::query_as::<_, ServerRow>(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM servers ORDER BY name"
    )))
    .fetch_all(conn)
    .await?)
}

pub async fn get(conn: &mut SqliteConnection, id: i64) -> Result<ServerRow> {
    sqlx::query_as::<_, ServerRow>(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM servers WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("no server with id {id}")))
}

pub async fn find_by_name(conn: &mut SqliteConnection, name: &str) -> Result<Option<ServerRow>> {
    Ok(sqlx::query_as::<_, ServerRow>(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM servers WHERE name = ?"
    )))
    .bind(name)
    .fetch_optional(conn)
    .await?)
}

pub async fn insert(conn: &mut SqliteConnection, s: &ServerSpec) -> Result<i64> {
    let now = now_ms();
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO servers (name, url, https_url, poll_url, country, latitude, longitude, \
         max_listeners, weight, enabled, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(s.name.as_str())
    .bind(s.url.as_str())
    .bind(s.https_url.as_ref().map(HttpUrl::as_str))
    .bind(s.poll_url.as_ref().map(HttpUrl::as_str))
    .bind(s.country.map(|c| c.to_string()))
    .bind(s.latitude.map(Latitude::get))
    .bind(s.longitude.map(Longitude::get))
    .bind(s.max_listeners.map(i64::from))
    .bind(i64::from(s.weight.get()))
    .bind(s.enabled)
    .bind(now)
    .bind(now)
    .fetch_one(conn)
    .await
    .map_err(|e| Error::from_unique(e, "name", s.name.as_str()))?;
    Ok(id)
}

pub async fn update(conn: &mut SqliteConnection, id: i64, s: &ServerSpec) -> Result<()> {
    let done = sqlx::query(
        "UPDATE servers SET name = ?, url = ?, https_url = ?, poll_url = ?, country = ?, \
         latitude = ?, longitude = ?, max_listeners = ?, weight = ?, enabled = ?, updated_at = ? \
         WHERE id = ?",
    )
    .bind(s.name.as_str())
    .bind(s.url.as_str())
    .bind(s.https_url.as_ref().map(HttpUrl::as_str))
    .bind(s.poll_url.as_ref().map(HttpUrl::as_str))
    .bind(s.country.map(|c| c.to_string()))
    .bind(s.latitude.map(Latitude::get))
    .bind(s.longitude.map(Longitude::get))
    .bind(s.max_listeners.map(i64::from))
    .bind(i64::from(s.weight.get()))
    .bind(s.enabled)
    .bind(now_ms())
    .bind(id)
    .execute(conn)
    .await
    .map_err(|e| Error::from_unique(e, "name", s.name.as_str()))?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no server with id {id}")));
    }
    Ok(())
}

pub async fn delete(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    let done = sqlx::query("DELETE FROM servers WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no server with id {id}")));
    }
    Ok(())
}
