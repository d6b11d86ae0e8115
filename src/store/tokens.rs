//! API tokens: a name, a scope, and the SHA-256 of the secret (the secret
//! itself is shown once, when made, and kept nowhere).

use sqlx::{FromRow, SqliteConnection};

use super::now_ms;
use super::{Error, Result};
use crate::domain::{FieldErrors, Slug};

/// What a token may do. `Write` includes `Read`; `Announce` only
/// registers relays for its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Announce,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Announce => "announce",
        }
    }

    pub fn parse(s: &str) -> std::result::Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "announce" => Ok(Scope::Announce),
            _ => Err(format!("{s:?} is not a scope: read, write or announce")),
        }
    }

    /// Whether a token of this scope may do what `needed` allows.
    pub(crate) fn allows(self, needed: Scope) -> bool {
        self == needed || (self == Scope::Write && needed == Scope::Read)
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub scope: String,
    /// Announce tokens: the streams, comma-separated.
    pub streams: Option<String>,
    pub created_at: i64,
}

impl TokenRow {
    pub fn scope(&self) -> Result<Scope> {
        Scope::parse(&self.scope).map_err(|e| Error::BadRow(format!("token {}: {e}", self.name)))
    }

    /// The streams an announce token may register relays for.
    pub fn streams(&self) -> Vec<String> {
        self.streams
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The name as the audit log shows who acted with it.
    pub fn actor(&self) -> String {
        actor(&self.name)
    }
}

pub fn actor(name: &str) -> String {
    format!("token:{name}")
}

/// Checks a new token's name and streams (fields `name`, `streams`), for
/// the `token add` command and the admin's token form alike.
pub fn check(
    name: &str,
    scope: Scope,
    streams: &[String],
) -> std::result::Result<(Slug, Vec<String>), FieldErrors> {
    let mut e = FieldErrors::default();
    let name = Slug::parse(name).map_err(|m| e.push("name", m)).ok();
    let mut list = Vec::new();
    for s in streams.iter().flat_map(|s| s.split(',')).map(str::trim) {
        match Slug::parse(s) {
            _ if s.is_empty() => {}
            Ok(slug) => list.push(slug.to_string()),
            Err(m) => e.push("streams", format!("{s:?}: {m}")),
        }
    }
    match scope {
        Scope::Announce if list.is_empty() && e.get("streams").is_none() => e.push(
            "streams",
            "an announce token needs the streams its relays may carry",
        ),
        Scope::Read | Scope::Write if !list.is_empty() => {
            e.push("streams", "only announce tokens are limited to streams")
        }
        _ => {}
    }
    match name {
        Some(name) if e.is_empty() => Ok((name, list)),
        _ => Err(e),
    }
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    super::sessions::hash(secret)
}

const COLUMNS: &str = "id, name, scope, streams, created_at";

pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<TokenRow>> {
    Ok(sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_tokens ORDER BY name"
    )))
    .fetch_all(conn)
    .await?)
}

/// The token whose secret is `secret`, if any.
pub(crate) async fn find_by_secret(
    conn: &mut SqliteConnection,
    secret: &str,
) -> Result<Option<TokenRow>> {
    Ok(sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE token_hash = ?"
    )))
    .bind(hash(secret))
    .fetch_optional(conn)
    .await?)
}

pub async fn find(conn: &mut SqliteConnection, name: &str) -> Result<Option<TokenRow>> {
    Ok(sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE name = ?"
    )))
    .bind(name)
    .fetch_optional(conn)
    .await?)
}

pub async fn insert(
    conn: &mut SqliteConnection,
    name: &str,
    scope: Scope,
    streams: &[String],
    secret: &str,
) -> Result<i64> {
    let streams = (scope == Scope::Announce).then(|| streams.join(","));
    sqlx::query_scalar::<_, i64>(
        "INSERT INTO api_tokens (name, scope, streams, token_hash, created_at) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(name)
    .bind(scope.as_str())
    .bind(streams)
    .bind(hash(secret))
    .bind(now_ms())
    .fetch_one(conn)
    .await
    .map_err(|e| Error::from_unique(e, "name", name))
}

pub async fn delete(conn: &mut SqliteConnection, name: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM api_tokens WHERE name = ?")
        .bind(name)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no token named {name:?}")));
    }
    Ok(())
}
