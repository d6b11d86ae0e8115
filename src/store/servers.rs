//! Servers (Icecast relays).

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, FromRow, SqliteConnection};

use super::now_ms;
use super::{Error, Result};
use crate::domain::policy::{self, IpVersions, Policy};
use crate::domain::{CountryCode, HttpUrl, Latitude, Longitude, Secret, ServerSpec, Slug, Weight};

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
    pub tier: i64,
    pub poll: bool,
    /// `4`, `6` or `4,6`; NULL = both.
    pub ip_versions: Option<String>,
    /// Comma-separated AS numbers and CIDR prefixes; NULL = none.
    pub asns: Option<String>,
    pub only_asns: Option<String>,
    pub only_prefixes: Option<String>,
    /// Outgoing bandwidth budget in Mbit/s; NULL = none.
    pub max_mbps: Option<f64>,
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
            policy: self.policy().map_err(|(what, e)| bad(what, e))?,
        })
    }

    /// The routing policy; the error names the column.
    pub fn policy(&self) -> std::result::Result<Policy, (&'static str, String)> {
        let items = |v: &Option<String>| policy::split_list(v.as_deref().unwrap_or(""));
        let asns = |what: &'static str, v: &Option<String>| {
            policy::split_asns(v.as_deref().unwrap_or(""))
                .and_then(|l| policy::parse_asns(&l))
                .map_err(|e| (what, e))
        };
        Ok(Policy {
            tier: policy::parse_tier(self.tier).map_err(|e| ("tier", e))?,
            poll: self.poll,
            ip_versions: match &self.ip_versions {
                None => IpVersions::default(),
                Some(_) => {
                    IpVersions::parse(&items(&self.ip_versions)).map_err(|e| ("ip_versions", e))?
                }
            },
            asns: asns("asns", &self.asns)?,
            only_asns: asns("only_asns", &self.only_asns)?,
            only_prefixes: policy::parse_prefixes(&items(&self.only_prefixes))
                .map_err(|e| ("only_prefixes", e))?,
            max_mbps: self
                .max_mbps
                .map(policy::parse_mbps)
                .transpose()
                .map_err(|e| ("max_mbps", e))?,
        })
    }

    /// Where load.xsl is read: `poll_url` if set, else the listener URL.
    pub(crate) fn poll_base(&self) -> &str {
        self.poll_url.as_deref().unwrap_or(&self.url)
    }
}

const COLUMNS: &str = "id, name, url, https_url, poll_url, country, latitude, longitude, \
                       max_listeners, weight, enabled, tier, poll, ip_versions, asns, \
                       only_asns, only_prefixes, max_mbps, created_at, updated_at";

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
    let p = policy_columns(&s.policy);
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO servers (name, url, https_url, poll_url, country, latitude, longitude, \
         max_listeners, weight, enabled, tier, poll, ip_versions, asns, only_asns, \
         only_prefixes, max_mbps, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
    .bind(p.0)
    .bind(p.1)
    .bind(p.2)
    .bind(p.3)
    .bind(p.4)
    .bind(p.5)
    .bind(p.6)
    .bind(now)
    .bind(now)
    .fetch_one(conn)
    .await
    .map_err(|e| Error::from_unique(e, "name", s.name.as_str()))?;
    Ok(id)
}

pub async fn update(conn: &mut SqliteConnection, id: i64, s: &ServerSpec) -> Result<()> {
    let p = policy_columns(&s.policy);
    let done = sqlx::query(
        "UPDATE servers SET name = ?, url = ?, https_url = ?, poll_url = ?, country = ?, \
         latitude = ?, longitude = ?, max_listeners = ?, weight = ?, enabled = ?, tier = ?, \
         poll = ?, ip_versions = ?, asns = ?, only_asns = ?, only_prefixes = ?, max_mbps = ?, \
         updated_at = ? \
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
    .bind(p.0)
    .bind(p.1)
    .bind(p.2)
    .bind(p.3)
    .bind(p.4)
    .bind(p.5)
    .bind(p.6)
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

/// The policy columns as stored: defaults and empty lists as NULL.
type PolicyColumns = (
    i64,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<f64>,
);

fn policy_columns(p: &Policy) -> PolicyColumns {
    let join = |l: Vec<String>| (!l.is_empty()).then(|| l.join(","));
    let nums = |l: &[u32]| join(l.iter().map(u32::to_string).collect());
    (
        i64::from(p.tier),
        p.poll,
        (!p.ip_versions.is_both()).then(|| p.ip_versions.labels().join(",")),
        nums(&p.asns),
        nums(&p.only_asns),
        join(p.only_prefixes.iter().map(ToString::to_string).collect()),
        p.max_mbps,
    )
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

/// Every server's callback token, by server id (servers without one are
/// absent). Read apart from [`ServerRow`], which is printed in places.
pub async fn callback_tokens(conn: &mut SqliteConnection) -> Result<HashMap<i64, Secret>> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, callback_token FROM servers WHERE callback_token IS NOT NULL")
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, t)| (id, Secret::new(t)))
        .collect())
}

pub async fn callback_token(conn: &mut SqliteConnection, id: i64) -> Result<Option<Secret>> {
    let t: Option<Option<String>> =
        sqlx::query_scalar("SELECT callback_token FROM servers WHERE id = ?")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(t.flatten().map(Secret::new))
}

pub async fn set_callback_token(
    conn: &mut SqliteConnection,
    id: i64,
    token: Option<&Secret>,
) -> Result<()> {
    sqlx::query("UPDATE servers SET callback_token = ?, updated_at = ? WHERE id = ?")
        .bind(token.map(Secret::expose))
        .bind(now_ms())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
